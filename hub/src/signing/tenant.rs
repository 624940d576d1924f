//! 承租信息: the tenant's phone and rent direct-debit (租金托收) card, with the checks the
//! guide asks for and the masked forms every screen and log shows.
//!
//! [`Phone`] and [`CardNumber`] hold the value as given (encryption at rest is the
//! storage layer's job); their `Debug` prints only the masked form, so a stray `{:?}` in
//! a log never leaks a card number.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A bank that takes the rent direct debit: any savings card of a bank with branches in
/// Shenzhen (guide §3 注意). The applicant picks one from [`BANKS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Bank {
    /// Stable code used on the wire and in events, e.g. `ICBC`.
    pub code: &'static str,
    /// Name shown to the applicant.
    pub zh: &'static str,
    pub en: &'static str,
}

/// The banks offered for the rent direct debit, in the order the page lists them.
pub const BANKS: [Bank; 15] = [
    bank_(
        "ICBC",
        "中国工商银行",
        "Industrial and Commercial Bank of China",
    ),
    bank_("CCB", "中国建设银行", "China Construction Bank"),
    bank_("ABC", "中国农业银行", "Agricultural Bank of China"),
    bank_("BOC", "中国银行", "Bank of China"),
    bank_("BOCOM", "交通银行", "Bank of Communications"),
    bank_("CMB", "招商银行", "China Merchants Bank"),
    bank_("PAB", "平安银行", "Ping An Bank"),
    bank_(
        "SPDB",
        "上海浦东发展银行",
        "Shanghai Pudong Development Bank",
    ),
    bank_("CITIC", "中信银行", "China CITIC Bank"),
    bank_("CMBC", "中国民生银行", "China Minsheng Bank"),
    bank_("CEB", "中国光大银行", "China Everbright Bank"),
    bank_("PSBC", "中国邮政储蓄银行", "Postal Savings Bank of China"),
    bank_("CIB", "兴业银行", "Industrial Bank"),
    bank_("CGB", "广发银行", "China Guangfa Bank"),
    bank_("HXB", "华夏银行", "Hua Xia Bank"),
];

const fn bank_(code: &'static str, zh: &'static str, en: &'static str) -> Bank {
    Bank { code, zh, en }
}

/// The bank of a code from [`BANKS`].
pub fn bank(code: &str) -> Option<&'static Bank> {
    BANKS.iter().find(|b| b.code == code)
}

/// A mainland mobile number, as the applicant typed it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The full number: for the contract and the SMS gateway, never for a screen.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `1[3-9]` then nine more digits: eleven ASCII digits, nothing else.
    pub fn is_valid(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && all_digits(&self.0)
    }
    /// `138****5678`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// The shortest and longest bank card numbers accepted (UnionPay issues 16 to 19 digits).
pub const CARD_DIGITS: std::ops::RangeInclusive<usize> = 16..=19;

/// A bank card number, as the applicant typed it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The full number: for the bank's direct-debit file, never for a screen.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Digits only, 16 to 19 of them.
    pub fn is_well_formed(&self) -> bool {
        CARD_DIGITS.contains(&self.0.len()) && all_digits(&self.0)
    }
    /// Whether the Luhn check digit agrees. Some UnionPay cards fail it, so a failure is a
    /// warning the applicant confirms, not a refusal.
    pub fn passes_luhn(&self) -> bool {
        luhn_valid(&self.0)
    }
    /// First six and last four digits: `622202*********1234`.
    pub fn masked(&self) -> String {
        mask_card(&self.0)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The Luhn (mod 10) check over a string of ASCII digits; `false` for anything else.
pub fn luhn_valid(digits: &str) -> bool {
    if !all_digits(digits) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Keeps the first `head` and last `tail` characters and stars the rest; a value too
/// short to keep both is starred whole.
fn mask(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n < head + tail + 1 {
        return "*".repeat(n);
    }
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

/// A card number with only its first six and last four digits shown.
pub fn mask_card(s: &str) -> String {
    mask(s, 6, 4)
}

/// A phone number with only its first three and last four digits shown: `138****5678`.
pub fn mask_phone(s: &str) -> String {
    mask(s, 3, 4)
}
