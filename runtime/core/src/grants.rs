//! The clock and randomness grants, as a pipeline writes them and as the
//! sandbox and the stage key read them.

/// Which clock a stage may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ClockGrant {
    /// Pinned at `SOURCE_DATE_EPOCH`.
    #[default]
    Pinned,
    /// `clock = "real"`.
    Real,
}

/// Which randomness a stage may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RandomGrant {
    /// Seeded from the stage key.
    #[default]
    Seeded,
    /// `random = "secure"`.
    Secure,
}

/// Which clock a stage reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Clock {
    /// The wall clock always reads this many seconds since the Unix epoch
    /// (`SOURCE_DATE_EPOCH`, 0 unless set), and the monotonic clock advances
    /// one microsecond per reading: deterministic, and still increasing.
    Pinned {
        /// Seconds since 1970-01-01T00:00:00Z.
        source_date_epoch: u64,
    },
    /// The host's clocks (`clock = "real"`).
    Real,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Pinned { source_date_epoch: 0 }
    }
}
