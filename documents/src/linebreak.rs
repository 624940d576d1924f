//! Greedy line breaking at the UAX #14 opportunities (`unicode-linebreak`): between two
//! hanzi, after a space, never before closing punctuation (，。、；：？！）」》) nor after
//! opening punctuation (（「《). A word wider than the line is cut between characters,
//! still keeping those rules where it can.

use std::ops::Range;
use unicode_linebreak::{linebreaks, BreakOpportunity};

/// One line of a paragraph.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    /// Byte range of the text printed on the line (trailing spaces left out).
    pub range: Range<usize>,
    /// Width of that text, in the unit of the advances.
    pub width: f32,
    /// The paragraph's last line (not justified).
    pub last: bool,
}

/// Characters no line may start with.
pub(crate) const NO_START: &str = "，。、；：？！）」》』】”’,.;:?!)";
/// Characters no line may end with.
pub(crate) const NO_END: &str = "（「《『【“‘(";

/// Breaks `text` into lines at most `max` wide (except a single character wider than the
/// line). `advance` measures one character.
pub(crate) fn break_lines(text: &str, max: f32, advance: impl Fn(char) -> f32) -> Vec<Line> {
    let width = |r: Range<usize>| text[r].chars().map(&advance).sum::<f32>();
    let trimmed_end = |r: &Range<usize>| r.start + text[r.clone()].trim_end().len();
    // Tolerance for rounding: a line that fits exactly must not break.
    let max_fit = max + 1e-3;
    let mut lines = Vec::new();
    let mut start = 0; // start of the current line
    let mut end = 0; // end of the last segment that fits on it
    let mut prev = 0;
    for (at, kind) in linebreaks(text) {
        let seg = prev..at;
        prev = at;
        // Would the line up to the end of this segment (without trailing spaces) fit?
        if width(start..trimmed_end(&seg)) <= max_fit {
            end = at;
        } else {
            if end > start {
                let r = start..trimmed_end(&(start..end));
                lines.push(Line {
                    width: width(r.clone()),
                    range: r,
                    last: false,
                });
                start = end;
            }
            // The segment alone may still be too wide: cut it between characters.
            while width(start..trimmed_end(&(start..at))) > max_fit {
                let cut = cut_point(text, start, at, max_fit, &advance);
                lines.push(Line {
                    width: width(start..cut),
                    range: start..cut,
                    last: false,
                });
                start = cut;
            }
            end = at;
        }
        if kind == BreakOpportunity::Mandatory {
            let r = start..trimmed_end(&(start..end));
            match lines.last_mut() {
                // Nothing left after a cut word: the cut line ends the paragraph.
                Some(prev) if r.is_empty() && !prev.last => prev.last = true,
                _ => lines.push(Line {
                    width: width(r.clone()),
                    range: r,
                    last: true,
                }),
            }
            start = at;
            end = at;
        }
    }
    lines
}

/// Where to cut `text[start..end]` (too wide) so the first part fits: at least one
/// character, and not before a closing or after an opening mark when avoidable.
fn cut_point(
    text: &str,
    start: usize,
    end: usize,
    max: f32,
    advance: &impl Fn(char) -> f32,
) -> usize {
    let chars: Vec<(usize, char)> = text[start..end]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .collect();
    let mut w = 0.0;
    let mut n = 0;
    for &(_, c) in &chars {
        if n > 0 && w + advance(c) > max {
            break;
        }
        w += advance(c);
        n += 1;
    }
    let allowed = |k: usize| !NO_START.contains(chars[k].1) && !NO_END.contains(chars[k - 1].1);
    if n >= chars.len() {
        return end;
    }
    // The last allowed cut that fits; failing that, the first allowed one after it (the
    // line then runs over rather than start with `，`); failing that, the whole word.
    let k = (1..=n)
        .rev()
        .find(|&k| allowed(k))
        .or_else(|| (n + 1..chars.len()).find(|&k| allowed(k)));
    k.map_or(end, |k| chars[k].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hanzi and full-width marks are 1 em, everything else half.
    fn adv(c: char) -> f32 {
        if c.is_ascii() {
            0.5
        } else {
            1.0
        }
    }

    fn lines(text: &str, max: f32) -> Vec<&str> {
        break_lines(text, max, adv)
            .into_iter()
            .map(|l| &text[l.range])
            .collect()
    }

    fn check_rules(text: &str, max: f32) {
        let all = lines(text, max);
        for line in &all {
            let first = line.chars().next().unwrap();
            let last = line.chars().last().unwrap();
            assert!(
                !NO_START.contains(first),
                "{line:?} starts with {first}: {all:?}"
            );
            assert!(!NO_END.contains(last), "{line:?} ends with {last}: {all:?}");
        }
    }

    #[test]
    fn hanzi_fill_the_line() {
        assert_eq!(
            lines("甲方将位于安居凤凰苑", 4.0),
            ["甲方将位", "于安居凤", "凰苑"]
        );
        let ls = break_lines("甲方将位于", 4.0, adv);
        assert_eq!(ls[0].width, 4.0);
        assert!(!ls[0].last && ls[1].last);
    }

    #[test]
    fn closing_punctuation_never_starts_a_line() {
        // `，` would be the fifth character: it goes to the next line with the hanzi before it.
        assert_eq!(lines("甲乙双方，在平等", 4.0), ["甲乙双", "方，在平", "等"]);
        assert_eq!(lines("订立本合同。乙方", 5.0), ["订立本合", "同。乙方"]);
        assert_eq!(lines("（一）转租、转借", 3.0), ["（一）", "转租、", "转借"]);
    }

    #[test]
    fn opening_punctuation_never_ends_a_line() {
        assert_eq!(lines("托收甲方（以下", 5.0), ["托收甲方", "（以下"]);
        assert_eq!(lines("依据《民法典》", 3.0), ["依据", "《民法", "典》"]);
    }

    #[test]
    fn the_rules_hold_at_every_width() {
        let text = "根据《中华人民共和国民法典》《公共租赁住房管理办法》及本市公共租赁住房管理的有关规定，甲、乙双方在平等、自愿、诚信的基础上，就乙方承租甲方公共租赁住房事宜（以下简称“该房屋”），订立本合同：（一）转租；（二）改变用途？！";
        for max in 3..40 {
            check_rules(text, max as f32);
            // Below 4 em, `屋”），` cannot be cut by the rules: the line runs over.
            for l in break_lines(text, max as f32, adv)
                .into_iter()
                .filter(|_| max >= 4)
            {
                assert!(
                    l.width <= max as f32,
                    "{l:?} {:?} wider than {max}",
                    &text[l.range.clone()]
                );
            }
        }
    }

    #[test]
    fn latin_breaks_at_spaces_and_spaces_do_not_count() {
        assert_eq!(lines("abc def ghi", 3.0), ["abc", "def", "ghi"]);
        assert_eq!(lines("abc def ghi", 4.0), ["abc def", "ghi"]);
        let ls = break_lines("abc def", 2.0, adv);
        assert_eq!(ls[0].width, 1.5);
    }

    #[test]
    fn a_word_wider_than_the_line_is_cut() {
        assert_eq!(lines("SZGZ2026000123", 2.0), ["SZGZ", "2026", "0001", "23"]);
        // A single character wider than the line still goes somewhere.
        assert_eq!(lines("租赁", 0.5), ["租", "赁"]);
    }

    #[test]
    fn empty_and_newlines() {
        assert!(lines("", 5.0).iter().all(|l| l.is_empty()));
        assert_eq!(lines("甲\n乙", 5.0), ["甲", "乙"]);
    }
}
