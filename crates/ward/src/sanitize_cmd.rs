//! `ward sanitize`: remove (or reveal) what a person does not see but a model reads.

use anyhow::{bail, Context};
use clap::Args;
use std::io::{Read, Write};
use std::path::PathBuf;
use ward_scan::sanitize::{injection, sanitize, Format};

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward sanitize README.md > README.clean.md     cleaned copy on stdout, summary on stderr
  ward sanitize page.html -o page.clean.html
  ward sanitize --report notes.md               what is hidden, revealed; nothing written
  ward sanitize --json photo.jpg                the same as JSON (add -o to also write)

Removed: Unicode tag characters (kept in emoji flags), zero-width and bidi controls where
they hide rather than shape text, variation selectors carrying data, invisible fillers,
private-use and control characters, terminal escapes and text they conceal; in Markdown and
HTML, comments and elements hidden by CSS or attributes (display:none, visibility, opacity,
tiny fonts, white on white, off-screen, hidden classes); in SVG, desc/title/metadata,
invisible text, scripts; in JPEG and PNG, EXIF/XMP/IPTC/comments/text chunks; in DOCX, XLSX
and PPTX, hidden, white or 1-pt text, tracked deletions, comments, speaker notes, hidden
slides, the cells and names of hidden worksheets, document properties; in PDF, the document
information and XMP metadata, and text drawn invisibly, blanked in place (in a PDF with
images invisible text is reported, not removed: it is how scans carry their OCR text).
Anything else is copied byte for byte.
An advisory score rates instruction-like text aimed at an assistant, counting hidden text
double; it never changes the output. Other binary formats are refused.

Exit codes: 0 nothing hidden; 1 hidden content found (removed, or reported with --report);
2 error (unreadable, unsupported or malformed file).")]
pub struct SanitizeArgs {
    /// The file (`-` for standard input).
    file: PathBuf,
    /// Write the cleaned file here instead of standard output.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Reveal what is hidden instead of writing a cleaned file.
    #[arg(long)]
    report: bool,
    /// The report as JSON on standard output (the cleaned file only with -o).
    #[arg(long)]
    json: bool,
    /// Treat the input as this format instead of guessing from its name and first bytes.
    #[arg(long, value_name = "FORMAT",
          value_parser = clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::name)))]
    format: Option<String>,
}

pub fn run(a: SanitizeArgs) -> crate::Outcome {
    let name = a.file.display().to_string();
    let mut input = Vec::new();
    if name == "-" {
        std::io::stdin()
            .read_to_end(&mut input)
            .context("cannot read standard input")?;
    } else {
        input = std::fs::read(&a.file).with_context(|| format!("cannot read {name}"))?;
    }
    let format = match a.format.as_deref().and_then(Format::from_name) {
        Some(f) => f,
        None => Format::detect(&name, &input).with_context(|| name.clone())?,
    };
    let s = sanitize(&input, format).with_context(|| name.clone())?;
    let score = if format.binary() {
        injection::score_hidden(&s.hidden)
    } else {
        injection::score(&s.output, &s.hidden)
    };
    let write_content = !(a.report || (a.json && a.output.is_none()));
    if write_content {
        match &a.output {
            Some(out) => write_atomically(out, &s.output)?,
            None => {
                let mut o = std::io::stdout().lock();
                o.write_all(&s.output)
                    .context("cannot write standard output")?;
                o.flush().ok();
            }
        }
    }
    if a.json {
        let doc = serde_json::json!({
            "file": name,
            "format": s.format,
            "changed": s.changed(),
            "hidden": s.hidden.iter().map(|h| serde_json::json!({
                "technique": h.technique,
                "id": h.technique.id(),
                "description": h.technique.describe(),
                "removed": h.technique.removed(),
                "start": h.start,
                "end": h.end,
                "count": h.count,
                "revealed": h.revealed,
            })).collect::<Vec<_>>(),
            "injection": score,
            "output": a.output.as_ref().map(|p| p.display().to_string()),
        });
        println!("{doc}");
    } else {
        let mut e = std::io::stderr().lock();
        let report_to_stdout = a.report;
        let mut lines = Vec::new();
        // The file's name as a person may safely read it (an agent may have chosen it).
        let name = ward_core::inert::path(&a.file);
        for h in &s.hidden {
            lines.push(format!(
                "{name}: bytes {}-{}: {} {}{}{}",
                h.start,
                h.end,
                h.technique.id(),
                h.technique.describe(),
                if h.technique.removed() { "" } else { " (kept)" },
                if h.revealed.is_empty() {
                    String::new()
                } else {
                    format!(": {:?}", h.revealed)
                }
            ));
        }
        if score.level != "none" {
            lines.push(format!(
                "{name}: injection score {:.2} ({}, advisory): {}",
                score.score,
                score.level,
                score
                    .signals
                    .iter()
                    .map(|x| format!(
                        "{}{} {:?}",
                        x.category,
                        if x.hidden { " (hidden)" } else { "" },
                        x.phrase
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if report_to_stdout {
            let mut o = std::io::stdout().lock();
            for l in &lines {
                writeln!(o, "{l}").ok();
            }
        } else {
            for l in &lines {
                writeln!(e, "ward: {l}").ok();
            }
        }
        let removed = s.hidden.iter().filter(|h| h.technique.removed()).count();
        writeln!(
            e,
            "ward: {name}: {} hidden item{} {}",
            s.hidden.len(),
            if s.hidden.len() == 1 { "" } else { "s" },
            if a.report {
                "found (nothing written)".to_string()
            } else if removed > 0 {
                format!("found, {removed} removed")
            } else {
                "found; output identical to the input".to_string()
            }
        )
        .ok();
    }
    Ok(if s.hidden.is_empty() { 0 } else { 1 })
}

/// Write to a temporary file beside `path`, then rename: a reader never sees half a file,
/// and `-o` may name the input itself.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let Some(file) = path.file_name() else {
        bail!("cannot write {}: not a file name", path.display());
    };
    let tmp = dir.join(format!(
        ".{}.ward-sanitize.{}",
        file.to_string_lossy(),
        std::process::id()
    ));
    let r = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
