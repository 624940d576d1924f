//! The main applicant's identity: full name and 居民身份证号码 (GB 11643-1999), from
//! the family sheet's optional columns. Only the lease the family signs and the
//! operator's review record show them in full; everything else shows the masked forms
//! ([`IdNumber::masked`], [`crate::import::mask_name`]). `Debug` prints only the masked
//! forms, so a stray `{:?}` in a log never leaks them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The weights of the first 17 characters (GB 11643-1999, ISO 7064 MOD 11-2).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each remainder mod 11.
const CHECK: &[u8; 11] = b"10X98765432";

/// Why a string is not a citizen identity number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("an identity number is 18 characters (17 digits and a digit or X), not {0}")]
    Length(usize),
    #[error("an identity number is 17 digits and a last digit or X")]
    NotDigits,
    #[error("the birth date (characters 7–14) is not a date")]
    BadDate,
    #[error("the check character does not match (GB 11643)")]
    Checksum,
}

impl IdNumberError {
    /// The same in Chinese.
    pub fn zh(&self) -> String {
        match self {
            IdNumberError::Length(n) => format!("身份证号应为 18 位，此处为 {n} 位"),
            IdNumberError::NotDigits => "身份证号应为 17 位数字加一位数字或 X".to_owned(),
            IdNumberError::BadDate => "身份证号中的出生日期（第 7–14 位）无效".to_owned(),
            IdNumberError::Checksum => "身份证号校验位不符（GB 11643）".to_owned(),
        }
    }
}

/// A checked 18-character identity number, the check character upper-cased.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdNumber(String);

impl IdNumber {
    /// Checks `s` (surrounding spaces cut, a lower-case `x` taken as `X`): 18 characters,
    /// 17 digits, a real birth date, the MOD 11-2 check character.
    pub fn parse(s: &str) -> Result<Self, IdNumberError> {
        let s = s.trim().to_ascii_uppercase();
        let n = s.chars().count();
        if n != 18 {
            return Err(IdNumberError::Length(n));
        }
        let b = s.as_bytes();
        if !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
            return Err(IdNumberError::NotDigits);
        }
        let num = |r: std::ops::Range<usize>| -> u32 {
            b[r].iter().fold(0, |a, d| a * 10 + u32::from(d - b'0'))
        };
        let (year, month, day) = (num(6..10), num(10..12), num(12..14));
        if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) {
            return Err(IdNumberError::BadDate);
        }
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if !(1..=days).contains(&day) {
            return Err(IdNumberError::BadDate);
        }
        let sum: u32 = b[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        if CHECK[(sum % 11) as usize] != b[17] {
            return Err(IdNumberError::Checksum);
        }
        Ok(Self(s))
    }

    /// The full number: for the lease and the operator's review record only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first six (the region) and the last four characters: `440305********123X`.
    pub fn masked(&self) -> String {
        let (head, tail) = (&self.0[..6], &self.0[14..]);
        format!("{head}********{tail}")
    }
}

impl TryFrom<String> for IdNumber {
    type Error = IdNumberError;
    fn try_from(s: String) -> Result<Self, IdNumberError> {
        IdNumber::parse(&s)
    }
}

impl From<IdNumber> for String {
    fn from(n: IdNumber) -> String {
        n.0
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

/// The main applicant's identity as the family sheet gives it. Either part may be
/// absent (the columns are optional and a cell may be empty); a row with neither has no
/// identity.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<IdNumber>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field(
                "full_name",
                &self.full_name.as_deref().map(crate::import::mask_name),
            )
            .field("id_number", &self.id_number)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb11643_check_character() {
        // The standard's own example (GB 11643-1999, annex).
        assert!(IdNumber::parse("11010519491231002X").is_ok());
        assert_eq!(
            IdNumber::parse("11010519491231002x").unwrap().as_str(),
            "11010519491231002X"
        );
        assert!(IdNumber::parse("440305199003071236").is_ok());
        assert!(IdNumber::parse(" 440303198511204560 ").is_ok());
        assert_eq!(
            IdNumber::parse("110105194912310021"),
            Err(IdNumberError::Checksum)
        );
        assert_eq!(
            IdNumber::parse("11010519491231002"),
            Err(IdNumberError::Length(17))
        );
        assert_eq!(
            IdNumber::parse("1101051949123100X2"),
            Err(IdNumberError::NotDigits)
        );
        assert_eq!(
            IdNumber::parse("１１０１０５１９４９１２３１００２Ｘ"),
            Err(IdNumberError::NotDigits)
        );
        // 1949-02-30.
        assert_eq!(
            IdNumber::parse("110105194902300028"),
            Err(IdNumberError::BadDate)
        );
    }

    #[test]
    fn masked_and_debug_hide_the_middle() {
        let n = IdNumber::parse("11010519491231002X").unwrap();
        assert_eq!(n.masked(), "110105********002X");
        assert_eq!(format!("{n:?}"), "IdNumber(110105********002X)");
        let i = Identity {
            full_name: Some("张三丰".into()),
            id_number: Some(n),
        };
        let shown = format!("{i:?}");
        assert!(
            !shown.contains("三") && !shown.contains("19491231"),
            "{shown}"
        );
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        assert!(serde_json::from_str::<IdNumber>("\"110105194912310021\"").is_err());
        let n: IdNumber = serde_json::from_str("\"11010519491231002X\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"11010519491231002X\"");
    }
}
