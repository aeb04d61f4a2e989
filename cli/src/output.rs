//! Printing to standard output without panicking when the reader goes away (`nnunet list | head`).

use std::io::Write;

/// Writes one line; a closed pipe ends the output quietly instead of failing.
pub(crate) fn line(out: &mut impl Write, text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes one line to stdout (see [`line`]).
pub(crate) fn say(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    line(&mut std::io::stdout().lock(), text)
}
