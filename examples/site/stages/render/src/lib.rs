//! The example site's renderer, a cairn stage written with `cairn-sdk`.
//!
//! Without arguments it renders every `/src/content/*.md` page to
//! `/out/<page>.html` plus an `/out/index.html`, and warns (as an annotation
//! on the page's line) about headings missing the space after `#`. With
//! `announce LOCALE PAGES` it writes a one-line announcement instead.

use std::fmt::Write as _;
use std::path::Path;

use cairn_sdk::{Annotation, Invocation, Outcome, Stage, fs};

struct Render;

impl Stage for Render {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        match invocation.args.as_slice() {
            [] => render(&invocation),
            [command, locale, pages] if command == "announce" => announce(locale, pages),
            other => Err(format!("unexpected arguments {other:?}; expected none, or `announce LOCALE PAGES`").into()),
        }
    }
}

fn render(invocation: &Invocation) -> cairn_sdk::Result<Outcome> {
    let title = invocation.config("title").unwrap_or("Site");
    let footer = invocation.config("footer").unwrap_or_default();
    let pages: Vec<_> = fs::files_under(&fs::src().join("content"))?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    let mut index = format!("<h1>{}</h1>\n<ul>\n", escape(title));
    let mut words = 0;
    for (done, page) in pages.iter().enumerate() {
        let text = std::fs::read_to_string(page)?;
        words += text.split_whitespace().count();
        let stem = page
            .file_stem()
            .map_or_else(|| "page".into(), |stem| stem.to_string_lossy().into_owned());
        let body = markdown_to_html(&text, page);
        let html = format!(
            "<!doctype html>\n<title>{} · {}</title>\n{body}<footer>{}</footer>\n",
            escape(&stem),
            escape(title),
            escape(footer)
        );
        std::fs::write(fs::out().join(format!("{stem}.html")), html)?;
        writeln!(index, "  <li><a href=\"{stem}.html\">{}</a></li>", escape(&stem))?;
        cairn_sdk::progress(done as u64 + 1, pages.len() as u64);
        cairn_sdk::debug!("rendered {}", page.display());
    }
    index.push_str("</ul>\n");
    std::fs::write(fs::out().join("index.html"), index)?;
    cairn_sdk::info!("rendered {} pages ({words} words)", pages.len());
    Ok(Outcome::new()
        .summary(format!("rendered {} pages", pages.len()))
        .output("pages", pages.len())
        .output("words", words))
}

fn announce(locale: &str, pages: &str) -> cairn_sdk::Result<Outcome> {
    let text = match locale {
        "fr" => format!("{pages} pages publiées"),
        _ => format!("{pages} pages published"),
    };
    std::fs::write(fs::out().join("announcement.txt"), format!("{text}\n"))?;
    Ok(Outcome::new().summary(text))
}

/// Headings, paragraphs and `code`: enough Markdown for the example.
fn markdown_to_html(text: &str, path: &Path) -> String {
    let mut html = String::new();
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |paragraph: &mut Vec<String>, html: &mut String| {
        if !paragraph.is_empty() {
            html.push_str(&format!("<p>{}</p>\n", inline(&paragraph.join(" "))));
            paragraph.clear();
        }
    };
    for (number, line) in text.lines().enumerate() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) {
            flush(&mut paragraph, &mut html);
            let heading = &line[hashes..];
            if !heading.starts_with(' ') {
                cairn_sdk::annotate(
                    Annotation::warning(
                        path.to_string_lossy(),
                        number as u32 + 1,
                        "a heading needs a space after the `#`",
                    )
                    .column(hashes as u32 + 1),
                );
            }
            html.push_str(&format!("<h{hashes}>{}</h{hashes}>\n", inline(heading.trim())));
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &mut html);
        } else {
            paragraph.push(line.trim().to_owned());
        }
    }
    flush(&mut paragraph, &mut html);
    html
}

/// Escapes text and turns `code` spans into `<code>`.
fn inline(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

cairn_sdk::export!(Render);
