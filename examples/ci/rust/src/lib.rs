//! Byte counts for people: `1536` → `1.5 KiB`.

/// `bytes` in the largest binary unit that keeps the number at least 1,
/// with one decimal below 10 of that unit.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes;
    let mut tenths = 0;
    while scaled >= 1024 && unit + 1 < UNITS.len() {
        tenths = (scaled % 1024) * 10 / 1024;
        scaled /= 1024;
        unit += 1;
    }
    let mut buffer = itoa::Buffer::new();
    let whole = buffer.format(scaled);
    if unit == 0 || scaled >= 10 {
        format!("{whole} {}", UNITS[unit])
    } else {
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn small_counts_stay_in_bytes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
    }

    #[test]
    fn kibibytes_get_one_decimal() {
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn large_counts_drop_the_decimal() {
        assert_eq!(bytes(20 * 1024 * 1024), "20 MiB");
    }
}
