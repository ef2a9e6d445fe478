//! Bounded, one-line text for everything that leaves the process: error
//! details, Event notes, the status file and the termination message. A store,
//! an HTTP layer or the apiserver may answer with a body of any size and shape;
//! none of it flows whole into what a person (or Kubernetes) reads.

/// One error detail (a store's message, an apiserver's reason).
pub const DETAIL_LIMIT: usize = 256;
/// Kubernetes refuses an Event whose note is longer (`NoteLengthLimit`).
pub const EVENT_NOTE_LIMIT: usize = 1024;
/// kubelet's `FallbackToLogsOnError` keeps the last 2048 bytes of the log as
/// the termination message: the one line the process ends with fits whole,
/// newline included.
pub const TERMINATION_LIMIT: usize = 2040;

const ELLIPSIS: char = '…';

/// `text` as one line of at most `max` bytes: every run of whitespace or
/// control characters (newlines, tabs, escapes) becomes one space, and a text
/// that does not fit is cut on a character boundary and ends with `…`.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut pending_space = false;
    let mut cut = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = c.len_utf8() + usize::from(pending_space);
        if out.len() + needed > max {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    if cut {
        truncate_in_place(&mut out, max.saturating_sub(ELLIPSIS.len_utf8()));
        if out.len() + ELLIPSIS.len_utf8() <= max {
            out.push(ELLIPSIS);
        }
    }
    out
}

/// Cuts `text` to at most `max` bytes on a character boundary, keeping its
/// lines (for a message that is already one line, `bounded` is the same).
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    truncate_in_place(&mut out, max.saturating_sub(ELLIPSIS.len_utf8()));
    if out.len() + ELLIPSIS.len_utf8() <= max {
        out.push(ELLIPSIS);
    }
    out
}

fn truncate_in_place(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    // No trailing space before the ellipsis.
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_made_one_line() {
        assert_eq!(bounded("a\n  b\tc\r\n", 100), "a b c");
        assert_eq!(bounded("  lead\u{1b}[31m red", 100), "lead [31m red");
        assert_eq!(bounded("", 10), "");
    }

    #[test]
    fn l2_long_text_is_cut_with_an_ellipsis_within_the_limit() {
        let long = "x".repeat(10 * 1024);
        let cut = bounded(&long, DETAIL_LIMIT);
        assert!(cut.len() <= DETAIL_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.len() > DETAIL_LIMIT - 8);
        let cut = truncate(&long, EVENT_NOTE_LIMIT);
        assert!(cut.len() <= EVENT_NOTE_LIMIT && cut.ends_with('…'));
    }

    #[test]
    fn l2_multi_byte_text_is_cut_on_a_character_boundary() {
        // 2-, 3- and 4-byte characters, at every limit around the cut.
        for unit in ["é", "€", "😀", "aé€😀"] {
            let text = unit.repeat(200);
            for max in 0..40 {
                for cut in [bounded(&text, max), truncate(&text, max)] {
                    assert!(cut.len() <= max, "{unit} {max}: {cut:?}");
                    assert!(text.starts_with(cut.trim_end_matches('…')), "{cut:?}");
                    if max >= 3 + unit.len() {
                        assert!(cut.ends_with('…'), "{unit} {max}: {cut:?}");
                    }
                }
            }
        }
    }
}
