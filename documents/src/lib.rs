//! Documents of xuanfang: the lease (签订合同) and the move-in notice (入住通知书) as PDFs.
//!
//! The wording is in templates beside this crate (`templates/lease.tmpl`,
//! `templates/notice.tmpl`, a small line-based markup described in `templates/README.md`).
//! A template is parsed into blocks (`template`), its `{field}` placeholders are filled
//! with the values as plain text (never parsed again, so a name with `#`, `|`, `{` or `*`
//! prints as it is), the blocks are laid out into A4 pages (`layout`: UAX #14 line
//! breaking in `linebreak`, justified CJK lines, bordered tables, page footers) and drawn
//! with krilla (`draw`). The font is a subset of Noto Sans CJK SC (OFL, `fonts/`) compiled
//! into the crate: a fresh machine needs no system font, and the PDF embeds only the glyphs
//! it uses. The same data gives the same bytes (no timestamp, stable document id), so a
//! hash can be recomputed.
//!
//! This crate only renders: the gateway stores the bytes and records [`Pdf::sha256`] in the
//! signing log (`SignContract`, `IssueNotice`).

use sha2::Digest;
use std::fmt;
use std::sync::LazyLock;
use template::{Fields, Template};
use xuanfang_hub::blob::Sha256;

pub use font::FONT;
pub use money::{fen_to_upper, fen_to_yuan};

mod draw;
mod font;
mod layout;
mod linebreak;
mod money;
mod template;

/// The lease template, as committed.
pub const LEASE_TEMPLATE: &str = include_str!("../templates/lease.tmpl");
/// The move-in notice template, as committed.
pub const NOTICE_TEMPLATE: &str = include_str!("../templates/notice.tmpl");
/// The family name of the embedded font.
pub const FONT_FAMILY: &str = "Noto Sans CJK SC";

static LEASE: LazyLock<Result<Template, String>> =
    LazyLock::new(|| Template::parse(LEASE_TEMPLATE));
static NOTICE: LazyLock<Result<Template, String>> =
    LazyLock::new(|| Template::parse(NOTICE_TEMPLATE));

/// A calendar date, printed as `2026年12月1日`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Self {
        Self { year, month, day }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}年{}月{}日", self.year, self.month, self.day)
    }
}

/// The unit as both documents print it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitInfo {
    /// The housing project (项目), e.g. `安居凤凰苑`.
    pub project: String,
    /// e.g. `3栋`.
    pub building: String,
    /// e.g. `2002`.
    pub number: String,
    pub floor: i32,
    /// e.g. `两房一厅`.
    pub layout: String,
    /// Floor area in m².
    pub area_m2: f64,
    /// e.g. `南`.
    pub orientation: String,
}

impl UnitInfo {
    /// `3栋 2002`: how the documents name the unit.
    pub fn label(&self) -> String {
        format!("{} {}", self.building, self.number)
    }
}

/// What the lease says. Identity numbers and phone numbers come in already masked
/// (see [`mask_middle`]): the PDF is downloaded and printed.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseData {
    /// 合同编号.
    pub contract_no: String,
    /// The landlord (甲方), e.g. `深圳市住房和建设局`.
    pub bureau: String,
    /// The main applicant (乙方), as the bureau holds the name.
    pub tenant: String,
    /// Masked identity card number.
    pub tenant_id: String,
    /// Masked phone number.
    pub phone: String,
    pub unit: UnitInfo,
    /// Monthly rent in fen (分).
    pub rent_fen: u64,
    /// Deposit (租赁保证金) in fen.
    pub deposit_fen: u64,
    pub term_start: Date,
    pub term_end: Date,
    /// The day the family signs.
    pub signed_on: Date,
}

/// What the move-in notice says.
#[derive(Clone, Debug, PartialEq)]
pub struct NoticeData {
    /// 通知书编号.
    pub notice_no: String,
    pub bureau: String,
    pub tenant: String,
    /// Masked identity card number.
    pub tenant_id: String,
    pub unit: UnitInfo,
    pub term_start: Date,
    pub term_end: Date,
    /// Where the keys are handed out (钥匙领取地点).
    pub key_place: String,
    /// When, as the bureau words it, e.g. `2026年12月8日至12月20日 9:00—17:00`.
    pub key_time: String,
    /// From when the family may move in.
    pub move_in: Date,
    /// The enquiry phone printed on the notice.
    pub contact: String,
    pub issued_on: Date,
}

/// A rendered document.
#[derive(Clone, PartialEq, Eq)]
pub struct Pdf {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: what the signing log records.
    pub sha256: Sha256,
    /// Template warnings (none for the committed templates; a test checks).
    pub warnings: Vec<String>,
}

impl fmt::Debug for Pdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pdf")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Why a document could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    /// The signature is not a PNG image.
    #[error("the signature is not a PNG image")]
    BadSignature,
    /// The template failed (a mistake in a template, a text too long for a page, or a
    /// signature image that cannot be decoded).
    #[error("template error: {0}")]
    Template(String),
    /// Writing the PDF failed.
    #[error("pdf error: {0}")]
    Pdf(String),
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(bytes).into())
}

/// Keeps the first `keep_start` and the last `keep_end` characters and stars the rest:
/// `mask_middle("440301199001011234", 4, 4)` is `4403**********1234`.
pub fn mask_middle(s: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= keep_start + keep_end {
        return s.to_string();
    }
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < keep_start || i >= n - keep_end {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The characters of `text` the embedded font has no glyph for (a name with a character
/// outside GB 2312 would print it as a blank box): the gateway can flag such a record.
pub fn uncovered(text: &str) -> Vec<char> {
    let mut out: Vec<char> = text
        .chars()
        .filter(|c| !c.is_control() && !font::FACE.covers(*c))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Renders the lease, with the signature image under 乙方 when given.
pub fn render_lease(data: &LeaseData, signature_png: Option<&[u8]>) -> Result<Pdf, DocError> {
    let signature = match signature_png {
        Some(png) => {
            if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
                return Err(DocError::BadSignature);
            }
            let image = krilla::image::Image::from_png(png.to_vec().into(), true)
                .map_err(|e| DocError::Template(format!("the signature image: {e}")))?;
            Some(image)
        }
        None => None,
    };
    let doc = Doc {
        template: &LEASE,
        fields: lease_fields(data),
        title: format!("公共租赁住房租赁合同 {}", data.contract_no),
        author: &data.bureau,
        ident: &data.contract_no,
    };
    render(doc, signature.as_ref())
}

/// Renders the move-in notice.
pub fn render_notice(data: &NoticeData) -> Result<Pdf, DocError> {
    let doc = Doc {
        template: &NOTICE,
        fields: notice_fields(data),
        title: format!("入住通知书 {}", data.notice_no),
        author: &data.bureau,
        ident: &data.notice_no,
    };
    render(doc, None)
}

/// The lease's fields, as the template names them.
fn lease_fields(data: &LeaseData) -> Fields {
    let mut f = unit_fields(&data.unit);
    f.insert("contract_no", data.contract_no.clone());
    f.insert("bureau", data.bureau.clone());
    f.insert("tenant", data.tenant.clone());
    f.insert("tenant_id", data.tenant_id.clone());
    f.insert("phone", data.phone.clone());
    f.insert("rent", fen_to_yuan(data.rent_fen));
    f.insert("rent_upper", fen_to_upper(data.rent_fen));
    f.insert("deposit", fen_to_yuan(data.deposit_fen));
    f.insert("deposit_upper", fen_to_upper(data.deposit_fen));
    f.insert("term_start", data.term_start.to_string());
    f.insert("term_end", data.term_end.to_string());
    f.insert("signed_on", data.signed_on.to_string());
    // The cell the image (or the place to sign) goes in; it prints no text.
    f.insert(template::SIGNATURE, String::new());
    f
}

/// The notice's fields, as the template names them.
fn notice_fields(data: &NoticeData) -> Fields {
    let mut f = unit_fields(&data.unit);
    f.insert("notice_no", data.notice_no.clone());
    f.insert("bureau", data.bureau.clone());
    f.insert("tenant", data.tenant.clone());
    f.insert("tenant_id", data.tenant_id.clone());
    f.insert("term_start", data.term_start.to_string());
    f.insert("term_end", data.term_end.to_string());
    f.insert("key_place", data.key_place.clone());
    f.insert("key_time", data.key_time.clone());
    f.insert("move_in", data.move_in.to_string());
    f.insert("contact", data.contact.clone());
    f.insert("issued_on", data.issued_on.to_string());
    f
}

fn unit_fields(u: &UnitInfo) -> Fields {
    let mut f = Fields::new();
    f.insert("project", u.project.clone());
    // `3栋 2002`: the documents name the unit as one.
    f.insert("unit", u.label());
    f.insert("floor", u.floor.to_string());
    f.insert("layout", u.layout.clone());
    f.insert("area", format!("{:.2}", u.area_m2));
    f.insert("orientation", u.orientation.clone());
    f
}

struct Doc<'a> {
    template: &'a Result<Template, String>,
    fields: Fields,
    title: String,
    author: &'a str,
    ident: &'a str,
}

fn render(doc: Doc<'_>, signature: Option<&krilla::image::Image>) -> Result<Pdf, DocError> {
    let template = doc
        .template
        .as_ref()
        .map_err(|e| DocError::Template(e.clone()))?;
    // A field the code fills but the template never prints is likely a template mistake.
    let used = template.fields();
    let warnings = doc
        .fields
        .keys()
        .filter(|k| !used.contains(**k))
        .map(|k| format!("warning: the template does not use the field {{{k}}}"))
        .collect();
    let laid = layout::layout(template, &doc.fields, signature.map(|i| i.size()))
        .map_err(DocError::Template)?;
    let title = template
        .pdf_title
        .fill(&doc.fields)
        .map_err(DocError::Template)?;
    let info = draw::Info {
        title: if title.is_empty() { doc.title } else { title },
        author: doc.author.to_string(),
        ident: doc.ident.to_string(),
    };
    let bytes = draw::draw(&laid, info, signature).map_err(|e| match e {
        draw::DrawError::Image(msg) => DocError::Template(format!("the signature image: {msg}")),
        draw::DrawError::Pdf(msg) => DocError::Pdf(msg),
    })?;
    Ok(Pdf {
        sha256: sha256(&bytes),
        bytes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        assert_eq!(
            mask_middle("440301199001011234", 4, 4),
            "4403**********1234"
        );
        assert_eq!(mask_middle("13812345678", 3, 4), "138****5678");
        assert_eq!(mask_middle("1234567", 4, 4), "1234567");
        assert_eq!(mask_middle("王小明", 1, 0), "王**");
    }

    #[test]
    fn dates_print_the_chinese_way() {
        assert_eq!(Date::new(2026, 12, 1).to_string(), "2026年12月1日");
    }
}

/// Sample data for the crate's unit tests.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    pub fn unit() -> UnitInfo {
        UnitInfo {
            project: "安居凤凰苑".into(),
            building: "3栋".into(),
            number: "2002".into(),
            floor: 20,
            layout: "两房一厅".into(),
            area_m2: 65.32,
            orientation: "南".into(),
        }
    }

    pub fn lease(tenant: &str) -> LeaseData {
        LeaseData {
            contract_no: "SZGZ-2026-000123".into(),
            bureau: "深圳市住房和建设局".into(),
            tenant: tenant.into(),
            tenant_id: mask_middle("440301199001011234", 4, 4),
            phone: mask_middle("13812345678", 3, 4),
            unit: unit(),
            rent_fen: 186_050,
            deposit_fen: 372_100,
            term_start: Date::new(2026, 12, 15),
            term_end: Date::new(2029, 12, 14),
            signed_on: Date::new(2026, 12, 1),
        }
    }

    pub fn notice(key_place: &str) -> NoticeData {
        NoticeData {
            notice_no: "RZ-2026-000123".into(),
            bureau: "深圳市住房和建设局".into(),
            tenant: "王小明".into(),
            tenant_id: mask_middle("440301199001011234", 4, 4),
            unit: unit(),
            term_start: Date::new(2026, 12, 15),
            term_end: Date::new(2029, 12, 14),
            key_place: key_place.into(),
            key_time: "2026年12月8日至12月20日 9:00—17:00".into(),
            move_in: Date::new(2026, 12, 15),
            contact: "0755-12345678".into(),
            issued_on: Date::new(2026, 12, 5),
        }
    }

    #[test]
    fn every_template_field_is_known_and_every_known_field_is_used() {
        for (name, src, known) in [
            ("lease", LEASE_TEMPLATE, lease_fields(&lease("王小明"))),
            ("notice", NOTICE_TEMPLATE, notice_fields(&notice("管理处"))),
        ] {
            let used = Template::parse(src).unwrap().fields();
            let known: std::collections::BTreeSet<String> =
                known.keys().map(|k| k.to_string()).collect();
            assert_eq!(
                used, known,
                "{name}: the template's fields and the code's differ"
            );
        }
    }
}
