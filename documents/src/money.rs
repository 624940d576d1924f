//! Amounts as a lease prints them: `2,345.50` and `人民币贰仟叁佰肆拾伍元伍角整`.

/// Fen to yuan with two decimals and thousands separators: `234550` is `2,345.50`.
pub fn fen_to_yuan(fen: u64) -> String {
    let yuan = (fen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in yuan.chars().enumerate() {
        if i > 0 && (yuan.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{:02}", fen % 100)
}

const DIGITS: [char; 10] = ['零', '壹', '贰', '叁', '肆', '伍', '陆', '柒', '捌', '玖'];
const SMALL: [&str; 4] = ["", "拾", "佰", "仟"];
const LARGE: [&str; 4] = ["", "万", "亿", "万亿"];

/// Fen in capital numerals (大写金额), as Chinese financial documents write amounts:
/// `234550` is `人民币贰仟叁佰肆拾伍元伍角整`, `100005` is `人民币壹仟元零伍分`.
pub fn fen_to_upper(fen: u64) -> String {
    let yuan = fen / 100;
    let jiao = (fen / 10 % 10) as usize;
    let fen = (fen % 10) as usize;
    let mut s = String::from("人民币");
    if yuan > 0 {
        s.push_str(&integer_upper(yuan));
        s.push('元');
    }
    if jiao == 0 && fen == 0 {
        if yuan == 0 {
            s.push_str("零元");
        }
        s.push('整');
        return s;
    }
    if jiao > 0 {
        s.push(DIGITS[jiao]);
        s.push('角');
    } else if yuan > 0 {
        s.push('零');
    }
    if fen > 0 {
        s.push(DIGITS[fen]);
        s.push('分');
    } else {
        s.push('整');
    }
    s
}

fn integer_upper(n: u64) -> String {
    let mut groups = Vec::new();
    let mut m = n;
    while m > 0 {
        groups.push((m % 10_000) as usize);
        m /= 10_000;
    }
    let mut out = String::new();
    let mut gap = false;
    for (g, &group) in groups.iter().enumerate().rev() {
        if group == 0 {
            gap = !out.is_empty();
            continue;
        }
        if !out.is_empty() && (group < 1000 || gap) {
            out.push('零');
        }
        gap = false;
        let mut zero = false;
        let mut started = false;
        for pos in (0..4).rev() {
            let d = group / 10usize.pow(pos as u32) % 10;
            if d == 0 {
                zero = started;
            } else {
                if zero {
                    out.push('零');
                    zero = false;
                }
                out.push(DIGITS[d]);
                out.push_str(SMALL[pos]);
                started = true;
            }
        }
        out.push_str(LARGE[g.min(3)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan() {
        assert_eq!(fen_to_yuan(0), "0.00");
        assert_eq!(fen_to_yuan(5), "0.05");
        assert_eq!(fen_to_yuan(234_550), "2,345.50");
        assert_eq!(fen_to_yuan(123_456_789), "1,234,567.89");
        assert_eq!(fen_to_yuan(100_000), "1,000.00");
    }

    #[test]
    fn upper() {
        assert_eq!(fen_to_upper(0), "人民币零元整");
        assert_eq!(fen_to_upper(234_550), "人民币贰仟叁佰肆拾伍元伍角整");
        assert_eq!(fen_to_upper(100_005), "人民币壹仟元零伍分");
        assert_eq!(fen_to_upper(50), "人民币伍角整");
        assert_eq!(fen_to_upper(7), "人民币柒分");
        assert_eq!(fen_to_upper(101_000), "人民币壹仟零壹拾元整");
        assert_eq!(fen_to_upper(1_000_100_000), "人民币壹仟万壹仟元整");
        assert_eq!(fen_to_upper(1_000_010_000), "人民币壹仟万零壹佰元整");
        assert_eq!(fen_to_upper(10_000_000_000), "人民币壹亿元整");
        assert_eq!(fen_to_upper(10_000_100_000), "人民币壹亿零壹仟元整");
        assert_eq!(fen_to_upper(460_800), "人民币肆仟陆佰零捌元整");
    }
}
