//! Documents of xuanfang: the lease (签订合同) and the move-in notice (入住通知书) as PDFs.
//!
//! The text is in typst templates beside this crate (`templates/lease.typ`,
//! `templates/notice.typ`); the data goes in as values through typst's `sys.inputs`, never
//! as markup, so a name with `#`, `*`, `$`, `[` or `\` prints as it is. The font is a
//! subset of Noto Sans CJK SC (OFL, `fonts/`) compiled into the crate: a fresh machine needs
//! no system font, and the PDF embeds only the glyphs it uses. The same data gives the
//! same bytes (no timestamp, stable document id), so a hash can be recomputed.
//!
//! This crate only renders: the gateway stores the bytes and records [`Pdf::sha256`] in the
//! signing log (`SignContract`, `IssueNotice`).

use sha2::Digest;
use std::fmt;
use std::sync::LazyLock;
use typst::diag::{FileError, FileResult, Severity, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Dict, Duration, Smart, Str, Value};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;
use xuanfang_hub::blob::Sha256;

pub use money::{fen_to_upper, fen_to_yuan};

mod money;

/// The lease template, as committed.
pub const LEASE_TEMPLATE: &str = include_str!("../templates/lease.typ");
/// The move-in notice template, as committed.
pub const NOTICE_TEMPLATE: &str = include_str!("../templates/notice.typ");
/// The embedded font: Noto Sans CJK SC, subset to GB 2312 (see `fonts/README.md`).
pub const FONT: &[u8] = include_bytes!("../fonts/NotoSansSC-GB2312.otf");
/// The family name the templates ask for.
pub const FONT_FAMILY: &str = "Noto Sans CJK SC";

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
    /// The template failed (a bug in a template, or an image typst cannot read).
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
    let font = &FONTS.fonts[0];
    let mut out: Vec<char> = text
        .chars()
        .filter(|c| !c.is_control() && !font.info().coverage.contains(*c as u32))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Renders the lease, with the signature image under 乙方 when given.
pub fn render_lease(data: &LeaseData, signature_png: Option<&[u8]>) -> Result<Pdf, DocError> {
    let mut d = Inputs::default();
    d.str("contract_no", &data.contract_no);
    d.str("bureau", &data.bureau);
    d.str("tenant", &data.tenant);
    d.str("tenant_id", &data.tenant_id);
    d.str("phone", &data.phone);
    d.unit(&data.unit);
    d.str("rent", &fen_to_yuan(data.rent_fen));
    d.str("rent_upper", &fen_to_upper(data.rent_fen));
    d.str("deposit", &fen_to_yuan(data.deposit_fen));
    d.str("deposit_upper", &fen_to_upper(data.deposit_fen));
    d.str("term_start", &data.term_start.to_string());
    d.str("term_end", &data.term_end.to_string());
    d.str("signed_on", &data.signed_on.to_string());
    match signature_png {
        Some(png) => {
            if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
                return Err(DocError::BadSignature);
            }
            d.0.insert("signature".into(), Value::Bytes(Bytes::new(png.to_vec())));
        }
        None => d.0.insert("signature".into(), Value::None),
    }
    render(LEASE_TEMPLATE, "/lease.typ", d.0, &data.contract_no)
}

/// Renders the move-in notice.
pub fn render_notice(data: &NoticeData) -> Result<Pdf, DocError> {
    let mut d = Inputs::default();
    d.str("notice_no", &data.notice_no);
    d.str("bureau", &data.bureau);
    d.str("tenant", &data.tenant);
    d.str("tenant_id", &data.tenant_id);
    d.unit(&data.unit);
    d.str("term_start", &data.term_start.to_string());
    d.str("term_end", &data.term_end.to_string());
    d.str("key_place", &data.key_place);
    d.str("key_time", &data.key_time);
    d.str("move_in", &data.move_in.to_string());
    d.str("contact", &data.contact);
    d.str("issued_on", &data.issued_on.to_string());
    render(NOTICE_TEMPLATE, "/notice.typ", d.0, &data.notice_no)
}

#[derive(Default)]
struct Inputs(Dict);

impl Inputs {
    fn str(&mut self, key: &str, value: &str) {
        self.0.insert(key.into(), Value::Str(Str::from(value)));
    }

    fn unit(&mut self, u: &UnitInfo) {
        self.str("project", &u.project);
        self.str("building", &u.building);
        self.str("number", &u.number);
        self.str("unit", &u.label());
        self.str("floor", &u.floor.to_string());
        self.str("layout", &u.layout);
        self.str("area", &format!("{:.2}", u.area_m2));
        self.str("orientation", &u.orientation);
    }
}

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| {
    let fonts: Vec<Font> = Font::iter(Bytes::new(FONT)).collect();
    assert!(!fonts.is_empty(), "the embedded font does not parse");
    Fonts {
        book: LazyHash::new(FontBook::from_fonts(&fonts)),
        fonts,
    }
});

/// Everything one compilation sees: one source file, the inputs, the embedded font.
/// No file system, no packages, no clock.
struct DocWorld {
    library: LazyHash<Library>,
    main: Source,
}

impl World for DocWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn file(&self, _id: FileId) -> FileResult<Bytes> {
        Err(FileError::AccessDenied)
    }

    fn font(&self, index: usize) -> Option<Font> {
        FONTS.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}

/// Cache entries unused for this many renders are dropped (typst's CLI uses 10 in watch mode).
const EVICT_AFTER: usize = 10;

fn render(template: &str, path: &str, inputs: Dict, ident: &str) -> Result<Pdf, DocError> {
    let vpath = VirtualPath::new(path).map_err(|e| DocError::Template(format!("{e:?}")))?;
    let id = RootedPath::new(VirtualRoot::Project, vpath).intern();
    let world = DocWorld {
        library: LazyHash::new(Library::builder().with_inputs(inputs).build()),
        main: Source::new(id, template.to_string()),
    };
    // typst memoizes layout and shaping in global caches that only grow: drop what the
    // last renders did not reuse, so a server rendering for every family stays flat.
    comemo::evict(EVICT_AFTER);
    let warned = typst::compile::<PagedDocument>(&world);
    let warnings = warned.warnings.iter().map(describe).collect();
    let document = warned
        .output
        .map_err(|errors| DocError::Template(join(&errors)))?;
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(ident.to_string()),
        creator: Smart::Custom(Some("xuanfang".to_string())),
        ..Default::default()
    };
    let bytes =
        typst_pdf::pdf(&document, &options).map_err(|errors| DocError::Pdf(join(&errors)))?;
    Ok(Pdf {
        sha256: sha256(&bytes),
        bytes,
        warnings,
    })
}

fn describe(d: &SourceDiagnostic) -> String {
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut s = format!("{kind}: {}", d.message);
    for hint in &d.hints {
        s.push_str(&format!(" (hint: {})", hint.v));
    }
    s
}

fn join(errors: &[SourceDiagnostic]) -> String {
    errors.iter().map(describe).collect::<Vec<_>>().join("; ")
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
