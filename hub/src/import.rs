//! Import of units (房源) and families (选房家庭) from CSV or XLSX, and assembly of a
//! [`Batch`] from them.
//!
//! Operators prepare these sheets by hand, so the import is strict and talkative: every
//! bad row is reported with the row number a spreadsheet shows (the header is row 1)
//! and a reason, and nothing at all is returned while any row is bad. Half an import
//! would silently leave families or units out of a selection.
//!
//! Headers may be Chinese or English, in any order:
//!
//! | Units         | 房源编号 | 楼栋     | 房号   | 楼层  | 户型   | 面积 | 朝向        | 租金 |
//! |---------------|----------|----------|--------|-------|--------|------|-------------|------|
//! | English       | id       | building | number | floor | layout | area | orientation | rent |
//!
//! | Families      | 家庭编号 | 姓名 | 排位 | 场次    | 可选户型          | 申请人全名 | 身份证号  |
//! |---------------|----------|------|------|---------|-------------------|------------|-----------|
//! | English       | id       | name | rank | session | eligible_layouts  | full_name  | id_number |
//!
//! The last two are optional: the main applicant's identity for the lease
//! ([`families_with_identities`]); the identity number is checked (GB 11643).
//!
//! A header may carry a unit in brackets (`面积(㎡)`, `租金（元/月）`). Eligible layouts
//! are separated by `|`, `、`, `;`, `；`, `,` or `，`. The session column may be left
//! out when sessions are scheduled automatically ([`SessionPlan::Auto`]).
//!
//! The columns are listed once, in [`UNIT_COLUMNS`] and [`FAMILY_COLUMNS`]: the
//! importer finds and checks cells by them, and [`templates`] makes the downloadable
//! templates and the documentation's tables from them.
//!
//! Uploads are untrusted. Nothing is allocated by what a file merely claims (an XLSX
//! `<dimension>`, a cell's position, a zip entry's declared size): a file is refused
//! with a [`Problem`] once it goes past one of the limits below, all far beyond a real
//! batch. Sizes: [`MAX_UNPACKED_BYTES`], [`MAX_SHARED_STRINGS_BYTES`],
//! [`MAX_TEXT_BYTES`]; shape: [`MAX_ROWS`], [`MAX_COLUMNS`], [`MAX_CELL_CHARS`]; fields:
//! [`MAX_ID_CHARS`], [`MAX_TEXT_CHARS`], [`FLOORS`], [`RANKS`], [`MAX_AREA`],
//! [`MAX_RENT`]; answers: [`MAX_PROBLEMS`], [`MAX_ECHO_CHARS`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Cursor, Read};
use std::ops::RangeInclusive;
use std::path::Path;

use calamine::{DataRef, Reader, Xlsx};

use crate::domain::{
    Batch, BatchError, BatchId, Family, FamilyId, Layout, Session, SessionId, SessionKind, Unit,
    UnitId,
};
use crate::signing::{IdNumber, IdNumberError, Identity};
use crate::time::Millis;

pub mod templates;

// ---------------------------------------------------------------------------
// Limits.

/// Rows read, counted as a spreadsheet shows them (the header included); data on a
/// later row refuses the file.
pub const MAX_ROWS: usize = 200_000;
/// Columns read (A to BL); data in a later column refuses the file.
pub const MAX_COLUMNS: usize = 64;
/// Characters in one cell. A longer cell is a problem of its row and is not copied.
pub const MAX_CELL_CHARS: usize = 1_000;
/// Bytes of cell text kept from one sheet, all cells together (shared strings count
/// each time they are used).
pub const MAX_TEXT_BYTES: usize = 32 << 20;
/// Bytes an XLSX file may unpack to, all its parts together.
pub const MAX_UNPACKED_BYTES: u64 = 64 << 20;
/// Bytes the shared-string table of an XLSX file may unpack to; it is held in memory
/// whole while the sheet is read.
pub const MAX_SHARED_STRINGS_BYTES: u64 = 16 << 20;
/// Problems listed for one file; the rest are counted ([`Problem::MoreProblems`]).
pub const MAX_PROBLEMS: usize = 100;
/// Characters of a cell value quoted back in a problem; longer values end in `…`.
pub const MAX_ECHO_CHARS: usize = 64;
/// Characters in an id: 房源编号, 家庭编号, 场次.
pub const MAX_ID_CHARS: usize = 64;
/// Characters in any other text field: 姓名, 楼栋, 房号, 户型 (each of 可选户型), 朝向,
/// 申请人全名.
pub const MAX_TEXT_CHARS: usize = 64;
/// Characters in a 身份证号 cell (GB 11643: 18).
pub const ID_NUMBER_CHARS: usize = 18;
/// 楼层 accepted.
pub const FLOORS: RangeInclusive<i64> = -99..=999;
/// 排位 accepted.
pub const RANKS: RangeInclusive<i64> = 1..=10_000_000;
/// Largest 面积 in m² (it must also be above 0).
pub const MAX_AREA: f64 = 10_000.0;
/// Largest 租金 in yuan per month (it may be 0).
pub const MAX_RENT: f64 = 1_000_000.0;

/// Longest message of an unreadable file; parser errors may quote the file.
const MAX_MESSAGE_CHARS: usize = 256;

/// One bad row of an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 1-based row as a spreadsheet shows it (header = 1); 0 when the file as a whole
    /// cannot be read.
    pub row: usize,
    pub problem: Problem,
}

impl RowError {
    /// The same in Chinese, for the Chinese console: `第 3 行：楼层“一楼”不是有效的数字`.
    pub fn zh(&self) -> String {
        if let Problem::MoreProblems(_) = self.problem {
            self.problem.zh()
        } else if self.row == 0 {
            format!("文件：{}", self.problem.zh())
        } else {
            format!("第 {} 行：{}", self.row, self.problem.zh())
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Problem::MoreProblems(_) = self.problem {
            write!(f, "{}", self.problem)
        } else if self.row == 0 {
            write!(f, "file: {}", self.problem)
        } else {
            write!(f, "row {}: {}", self.row, self.problem)
        }
    }
}

/// What is wrong with a row (or the file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file could not be read at all (not CSV/XLSX, no sheet, broken quoting, ...).
    #[error("unreadable file: {0}")]
    Unreadable(String),
    /// The file has a header but no data rows.
    #[error("no data rows")]
    NoRows,
    /// A required column is missing from the header row.
    #[error("missing column {0}")]
    MissingColumn(&'static str),
    /// The header names the same column twice.
    #[error("column {0} appears twice")]
    DuplicateColumn(&'static str),
    /// A required cell is empty.
    #[error("missing {0}")]
    MissingField(&'static str),
    /// A cell that must be a number is not one (or is out of range).
    #[error("{field}: {value:?} is not a valid number")]
    BadNumber { field: &'static str, value: String },
    /// A CSV row is not valid UTF-8 (Excel on Chinese Windows saves GBK by default).
    #[error("not UTF-8 text; save the file as \"CSV UTF-8\"")]
    NotUtf8,
    /// The id was already used by an earlier row.
    #[error("duplicate id {id} (first on row {first_row})")]
    DuplicateId { id: String, first_row: usize },
    /// The rank was already used by an earlier row.
    #[error("duplicate rank {rank} (first on row {first_row})")]
    DuplicateRank { rank: u32, first_row: usize },
    /// A number that is outside what the field accepts ([`FLOORS`], [`RANKS`], ...).
    #[error("{field}: {value} is out of range (allowed: {allowed})")]
    OutOfRange {
        field: &'static str,
        value: String,
        allowed: String,
    },
    /// A text field (or, on reading, any cell) is longer than allowed.
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    /// A text field holds a control character (line break, tab, ...).
    #[error("{field} contains a control character (line break, tab, ...)")]
    ControlCharacter { field: &'static str },
    /// The sheet has data on a row after [`MAX_ROWS`]; the file is not read.
    #[error("the sheet has data on row {row}; at most {max} rows are read")]
    TooManyRows { row: usize, max: usize },
    /// The sheet has data in a column after [`MAX_COLUMNS`]; the file is not read.
    #[error("the sheet has data in column {column}; at most {max} columns are read")]
    TooManyColumns { column: usize, max: usize },
    /// An XLSX file, or its shared-string table, unpacks to more than allowed.
    #[error("{part} unpacks to more than {max_mib} MiB")]
    TooBig { part: &'static str, max_mib: u64 },
    /// The cells of the sheet hold more than [`MAX_TEXT_BYTES`] of text together.
    #[error("the sheet holds more than {max_mib} MiB of text")]
    TooMuchText { max_mib: usize },
    /// A family none of whose 可选户型 is the layout of any unit of the batch: it could
    /// never get a flat, and it is almost always a spelling that differs between the two
    /// sheets (两房一厅 / 二房一厅).
    #[error("no unit has any of the layouts {layouts}")]
    NoUnitOfLayouts { layouts: String },
    /// A 身份证号 that is not a valid identity number. The value is not quoted back
    /// (personal data in an answer that may be logged).
    #[error("id_number: {0}")]
    BadIdNumber(IdNumberError),
    /// The same 身份证号 on two rows (quoted masked).
    #[error("id_number {masked} appears twice (first on row {first_row})")]
    DuplicateIdNumber { masked: String, first_row: usize },
    /// A 身份证号 without a 申请人全名: the lease would pair a number with a masked name.
    #[error("id_number given without full_name")]
    IdNumberWithoutName,
    /// The last entry of a list cut at [`MAX_PROBLEMS`]: how many were left out.
    #[error("and {0} more problem(s) not listed")]
    MoreProblems(usize),
}

impl Problem {
    /// A stable name of the kind of problem, for clients and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Unreadable(_) => "unreadable",
            Problem::NoRows => "no_rows",
            Problem::MissingColumn(_) => "missing_column",
            Problem::DuplicateColumn(_) => "duplicate_column",
            Problem::MissingField(_) => "missing_field",
            Problem::BadNumber { .. } => "bad_number",
            Problem::NotUtf8 => "not_utf8",
            Problem::DuplicateId { .. } => "duplicate_id",
            Problem::DuplicateRank { .. } => "duplicate_rank",
            Problem::OutOfRange { .. } => "out_of_range",
            Problem::TooLong { .. } => "too_long",
            Problem::ControlCharacter { .. } => "control_character",
            Problem::TooManyRows { .. } => "too_many_rows",
            Problem::TooManyColumns { .. } => "too_many_columns",
            Problem::TooBig { .. } => "too_big",
            Problem::TooMuchText { .. } => "too_much_text",
            Problem::NoUnitOfLayouts { .. } => "no_unit_of_layouts",
            Problem::BadIdNumber(_) => "bad_id_number",
            Problem::DuplicateIdNumber { .. } => "duplicate_id_number",
            Problem::IdNumberWithoutName => "id_number_without_name",
            Problem::MoreProblems(_) => "more_problems",
        }
    }

    /// The message in Chinese, naming columns by their Chinese headers. (Parser messages
    /// of an unreadable file stay as the parser wrote them.)
    pub fn zh(&self) -> String {
        let f = |name: &'static str| column_zh(name);
        match self {
            Problem::Unreadable(m) => format!("无法读取文件：{m}"),
            Problem::NoRows => "没有数据行".to_owned(),
            Problem::MissingColumn(c) => format!("缺少列“{}”", f(c)),
            Problem::DuplicateColumn(c) => format!("列“{}”出现了两次", f(c)),
            Problem::MissingField(c) => format!("“{}”未填写", f(c)),
            Problem::BadNumber { field, value } => {
                format!("{}“{value}”不是有效的数字", f(field))
            }
            Problem::NotUtf8 => "不是 UTF-8 文本；请另存为“CSV UTF-8”格式".to_owned(),
            Problem::DuplicateId { id, first_row } => {
                format!("编号 {id} 重复（首次出现在第 {first_row} 行）")
            }
            Problem::DuplicateRank { rank, first_row } => {
                format!("排位 {rank} 重复（首次出现在第 {first_row} 行）")
            }
            Problem::OutOfRange {
                field,
                value,
                allowed,
            } => format!(
                "{}“{value}”超出范围（允许：{}）",
                f(field),
                allowed
                    .replace("above ", "大于 ")
                    .replace(", up to ", "，至多 ")
                    .replace(" to ", " 至 ")
            ),
            Problem::TooLong { field, max } => format!("“{}”超过 {max} 个字符", f(field)),
            Problem::ControlCharacter { field } => {
                format!("“{}”含有控制字符（换行、制表符等）", f(field))
            }
            Problem::TooManyRows { row, max } => {
                format!("第 {row} 行仍有数据；最多读取 {max} 行")
            }
            Problem::TooManyColumns { column, max } => {
                format!("第 {column} 列仍有数据；最多读取 {max} 列")
            }
            Problem::TooBig { part, max_mib } => format!("{part} 解压后超过 {max_mib} MiB"),
            Problem::TooMuchText { max_mib } => format!("表格文字总量超过 {max_mib} MiB"),
            Problem::NoUnitOfLayouts { layouts } => {
                format!(
                    "可选户型 {layouts} 在房源表中没有任何房源，该家庭无房可选（请核对户型写法）"
                )
            }
            Problem::BadIdNumber(e) => e.zh(),
            Problem::DuplicateIdNumber { masked, first_row } => {
                format!("身份证号 {masked} 重复（首次出现在第 {first_row} 行）")
            }
            Problem::IdNumberWithoutName => "填写了身份证号，但未填写申请人全名".to_owned(),
            Problem::MoreProblems(n) => format!("另有 {n} 处问题未列出"),
        }
    }
}

/// The Chinese header of a column named `name` in either sheet (`id` is both sheets'
/// 编号); the name itself when no column has it.
fn column_zh(name: &'static str) -> &'static str {
    if name == "id" {
        return "编号";
    }
    UNIT_COLUMNS
        .iter()
        .chain(FAMILY_COLUMNS)
        .find(|c| c.name == name)
        .map_or(name, Column::zh)
}

/// Every bad row of an import, up to [`MAX_PROBLEMS`]; never empty. When rows were
/// left out, the last entry is [`Problem::MoreProblems`] with their number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} bad row(s): {}", self.count(), summary(.0))]
pub struct ImportErrors(pub Vec<RowError>);

fn summary(errors: &[RowError]) -> String {
    // The full list can be thousands of rows; the message shows the first few.
    const SHOWN: usize = 5;
    let mut s: Vec<String> = errors.iter().take(SHOWN).map(|e| e.to_string()).collect();
    if errors.len() > SHOWN {
        s.push(format!("and {} more", errors.len() - SHOWN));
    }
    s.join("; ")
}

impl ImportErrors {
    fn file(problem: Problem) -> Self {
        ImportErrors(vec![RowError { row: 0, problem }])
    }

    fn at(row: usize, problem: Problem) -> Self {
        ImportErrors(vec![RowError { row, problem }])
    }

    /// How many problems there are, the unlisted ones included.
    pub fn count(&self) -> usize {
        self.0
            .iter()
            .map(|e| match e.problem {
                Problem::MoreProblems(n) => n,
                _ => 1,
            })
            .sum()
    }
}

/// Collects problems, listing the first [`MAX_PROBLEMS`] and counting the rest.
#[derive(Default)]
struct Problems {
    listed: Vec<RowError>,
    more: usize,
}

impl Problems {
    fn push(&mut self, row: usize, problem: Problem) {
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(RowError { row, problem });
        } else {
            self.more += 1;
        }
    }

    fn into_result(self) -> Result<(), ImportErrors> {
        let Problems { mut listed, more } = self;
        if more > 0 {
            listed.push(RowError {
                row: 0,
                problem: Problem::MoreProblems(more),
            });
        }
        if listed.is_empty() {
            Ok(())
        } else {
            Err(ImportErrors(listed))
        }
    }
}

/// `s` cut to `max` characters, with `…` when it was longer.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// A cell value as quoted back in a problem.
fn echo(s: &str) -> String {
    clip(s, MAX_ECHO_CHARS)
}

/// Whether `s` has more than `max` characters, looking at no more than that.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && (s.len() > 4 * max || s.chars().nth(max).is_some())
}

/// The container format of an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// The format a file name suggests (`.csv`, `.xlsx`/`.xlsm`), case-insensitive.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "txt" => Some(Format::Csv),
            "xlsx" | "xlsm" => Some(Format::Xlsx),
            _ => None,
        }
    }
}

/// Units from a CSV or XLSX file's bytes.
pub fn units(format: Format, bytes: &[u8]) -> Result<Vec<Unit>, ImportErrors> {
    parse_units(read_table(format, bytes, UNIT_COLUMNS)?)
}

/// Families from a CSV or XLSX file's bytes.
pub fn families(format: Format, bytes: &[u8]) -> Result<Vec<Family>, ImportErrors> {
    families_with_rows(format, bytes).map(|v| v.into_iter().map(|(_, f)| f).collect())
}

/// Families with the spreadsheet row of each (for checks made against the units, such
/// as [`check_layouts`]).
pub fn families_with_rows(
    format: Format,
    bytes: &[u8],
) -> Result<Vec<(usize, Family)>, ImportErrors> {
    families_with_identities(format, bytes)
        .map(|v| v.into_iter().map(|(row, f, _)| (row, f)).collect())
}

/// The same with the main applicant's identity of each row that gives one (申请人全名,
/// 身份证号). The family itself keeps only the masked name: the identity is personal
/// data the caller stores encrypted, apart from the batch.
pub fn families_with_identities(
    format: Format,
    bytes: &[u8],
) -> Result<Vec<(usize, Family, Option<Identity>)>, ImportErrors> {
    parse_families(read_table(format, bytes, FAMILY_COLUMNS)?)
}

/// Units from a UTF-8 CSV (with or without BOM).
pub fn units_from_csv(bytes: &[u8]) -> Result<Vec<Unit>, ImportErrors> {
    units(Format::Csv, bytes)
}

/// Families from a UTF-8 CSV (with or without BOM).
pub fn families_from_csv(bytes: &[u8]) -> Result<Vec<Family>, ImportErrors> {
    families(Format::Csv, bytes)
}

/// Units from the first sheet of an XLSX workbook.
pub fn units_from_xlsx(bytes: &[u8]) -> Result<Vec<Unit>, ImportErrors> {
    units(Format::Xlsx, bytes)
}

/// Families from the first sheet of an XLSX workbook.
pub fn families_from_xlsx(bytes: &[u8]) -> Result<Vec<Family>, ImportErrors> {
    families(Format::Xlsx, bytes)
}

/// The public form of an applicant's name: first and last character kept, the middle
/// masked (`张三丰` → `张*丰`, `欧阳娜娜` → `欧**娜`, `李四` → `李*`). A name that already
/// holds a mask character is taken as masked and kept.
pub fn mask_name(name: &str) -> String {
    let name = name.trim();
    if name.contains(['*', '＊', '×']) {
        return name.to_owned();
    }
    let chars: Vec<char> = name.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 | 2 => format!("{}*", chars[0]),
        n => {
            let mut s = String::with_capacity(name.len());
            s.push(chars[0]);
            s.extend(std::iter::repeat_n('*', n - 2));
            s.push(chars[n - 1]);
            s
        }
    }
}

/// Splits a 可选户型 cell into layouts.
pub fn split_layouts(cell: &str) -> Vec<Layout> {
    cell.split(LAYOUT_SEPARATORS)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Layout::new)
        .collect()
}

// ---------------------------------------------------------------------------
// Tables: both formats become rows of strings with their spreadsheet row number.

/// A sheet as text: for each data row, its row number and the cells of the located
/// columns (in the order of the column list; `""` where a column is absent), or the
/// problem found while reading it.
struct Table {
    rows: Vec<(usize, Result<Vec<String>, Problem>)>,
}

fn read_table(format: Format, bytes: &[u8], columns: &[Column]) -> Result<Table, ImportErrors> {
    let mut table = TableBuilder::new(columns);
    match format {
        Format::Csv => read_csv(bytes, &mut table)?,
        Format::Xlsx => read_xlsx(bytes, &mut table)?,
    }
    table.finish()
}

/// One non-blank cell as read, before it is known which column it belongs to.
enum RawCell {
    Text(String),
    /// Longer than [`MAX_CELL_CHARS`]; not copied.
    TooLong,
    /// Not UTF-8 (CSV only).
    NotUtf8,
}

impl RawCell {
    /// The cell of a text, or `None` when it is blank.
    fn text(s: &str) -> Option<RawCell> {
        let s = s.trim();
        if s.is_empty() {
            None
        } else if longer_than(s, MAX_CELL_CHARS) {
            Some(RawCell::TooLong)
        } else {
            Some(RawCell::Text(s.to_owned()))
        }
    }
}

/// Refuses a non-blank cell outside the rows and columns read (1-based row, 0-based
/// column), before anything is stored for it.
fn check_position(row: usize, col: usize) -> Result<(), ImportErrors> {
    if row > MAX_ROWS {
        return Err(ImportErrors::file(Problem::TooManyRows {
            row,
            max: MAX_ROWS,
        }));
    }
    if col >= MAX_COLUMNS {
        return Err(ImportErrors::file(Problem::TooManyColumns {
            column: col + 1,
            max: MAX_COLUMNS,
        }));
    }
    Ok(())
}

/// Builds a [`Table`] from the rows of a sheet in order: the first non-blank row is the
/// header, whose columns are located at once; later rows keep only those columns.
struct TableBuilder<'c> {
    columns: &'c [Column],
    /// The header row and where each column is in it, once read.
    header: Option<(usize, Vec<Option<usize>>)>,
    rows: Vec<(usize, Result<Vec<String>, Problem>)>,
    text_bytes: usize,
}

impl<'c> TableBuilder<'c> {
    fn new(columns: &'c [Column]) -> Self {
        Self {
            columns,
            header: None,
            rows: Vec::new(),
            text_bytes: 0,
        }
    }

    /// Takes one row (cells by column index, `None` where blank); blank rows are
    /// skipped. The cells are taken out of `cells`.
    fn push(&mut self, row: usize, cells: &mut [Option<RawCell>]) -> Result<(), ImportErrors> {
        if cells.iter().all(Option::is_none) {
            return Ok(());
        }
        let Some((_, at)) = &self.header else {
            let mut names = Vec::with_capacity(cells.len());
            for cell in cells.iter_mut() {
                match cell.take() {
                    None => names.push(String::new()),
                    Some(RawCell::Text(s)) => names.push(s),
                    Some(RawCell::NotUtf8) => return Err(ImportErrors::at(row, Problem::NotUtf8)),
                    Some(RawCell::TooLong) => {
                        return Err(ImportErrors::at(
                            row,
                            Problem::TooLong {
                                field: "header",
                                max: MAX_CELL_CHARS,
                            },
                        ))
                    }
                }
            }
            self.header = Some((row, locate(row, &names, self.columns)?));
            return Ok(());
        };
        let mut kept = Vec::with_capacity(self.columns.len());
        let mut problem = None;
        for (column, i) in self.columns.iter().zip(at) {
            match i.and_then(|i| cells.get_mut(i)).and_then(Option::take) {
                None => kept.push(String::new()),
                Some(RawCell::Text(s)) => {
                    self.text_bytes += s.len();
                    kept.push(s);
                }
                Some(RawCell::TooLong) => {
                    problem.get_or_insert(Problem::TooLong {
                        field: column.name,
                        max: MAX_CELL_CHARS,
                    });
                }
                Some(RawCell::NotUtf8) => {
                    problem.get_or_insert(Problem::NotUtf8);
                }
            }
        }
        if self.text_bytes > MAX_TEXT_BYTES {
            return Err(ImportErrors::file(Problem::TooMuchText {
                max_mib: MAX_TEXT_BYTES >> 20,
            }));
        }
        self.rows.push((row, problem.map_or(Ok(kept), Err)));
        Ok(())
    }

    fn finish(self) -> Result<Table, ImportErrors> {
        let (header_row, _) = self
            .header
            .ok_or_else(|| ImportErrors::file(Problem::NoRows))?;
        if self.rows.is_empty() {
            return Err(ImportErrors::at(header_row, Problem::NoRows));
        }
        Ok(Table { rows: self.rows })
    }
}

fn read_csv(bytes: &[u8], table: &mut TableBuilder<'_>) -> Result<(), ImportErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    let mut cells: Vec<Option<RawCell>> = Vec::new();
    loop {
        let line = rdr.position().line() as usize;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(line, |p| p.line() as usize);
                return Err(ImportErrors::at(row, unreadable(&e)));
            }
        }
        // The csv reader skips blank lines but counts a record from before them; a
        // spreadsheet shows them as rows, so count newlines up to the record's first byte.
        let row = record
            .position()
            .map_or(line, |p| lines.line_of(p.byte() as usize));
        cells.clear();
        for (col, c) in record.iter().enumerate() {
            let cell = match std::str::from_utf8(c) {
                Ok(s) => RawCell::text(s),
                Err(_) => Some(RawCell::NotUtf8),
            };
            if cell.is_some() {
                check_position(row, col)?;
                cells.resize_with(col, || None);
                cells.push(cell);
            }
        }
        table.push(row, &mut cells)?;
    }
    Ok(())
}

/// Line numbers of byte offsets, for offsets that only grow.
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// The 1-based line of the first non-blank byte at or after `offset`.
    fn line_of(&mut self, offset: usize) -> usize {
        let mut end = offset.min(self.bytes.len());
        while end < self.bytes.len() && matches!(self.bytes[end], b'\n' | b'\r') {
            end += 1;
        }
        if end >= self.pos {
            self.line += self.bytes[self.pos..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.pos = end;
        }
        self.line
    }
}

/// A file-level "unreadable" problem, its message cut to a sane length.
fn unreadable(e: &dyn fmt::Display) -> Problem {
    Problem::Unreadable(clip(&e.to_string(), MAX_MESSAGE_CHARS))
}

/// Reads the first sheet cell by cell: only cells with a value take memory, whatever
/// the sheet's declared dimension or the positions of its cells. calamine's dense
/// `Range` would allocate every cell between A1 and the last one used.
fn read_xlsx(bytes: &[u8], table: &mut TableBuilder<'_>) -> Result<(), ImportErrors> {
    check_unpacked_size(bytes)?;
    // calamine indexes some tables without checking (a shared-string index past the
    // end panics); a malformed upload must be refused, not take the caller down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_xlsx_cells(bytes, table)
    }))
    .unwrap_or_else(|_| {
        Err(ImportErrors::file(Problem::Unreadable(
            "malformed workbook".into(),
        )))
    })
}

fn read_xlsx_cells(bytes: &[u8], table: &mut TableBuilder<'_>) -> Result<(), ImportErrors> {
    let file = |e: &dyn fmt::Display| ImportErrors::file(unreadable(e));
    // XLSX only: xls and ods would be read into a dense range by calamine.
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| file(&format_args!("not an XLSX workbook: {e}")))?;
    let Some(name) = wb.sheet_names().into_iter().next() else {
        return Err(file(&"the workbook has no sheet"));
    };
    let mut cells = wb.worksheet_cells_reader(&name).map_err(|e| file(&e))?;
    let mut row_cells: Vec<Option<RawCell>> = Vec::new();
    let mut current = 0; // 1-based row being collected; 0 before the first
    while let Some(cell) = cells.next_cell().map_err(|e| file(&e))? {
        let Some(value) = raw_cell(cell.get_value()) else {
            continue;
        };
        let (r, c) = cell.get_position();
        let (row, col) = (r as usize + 1, c as usize);
        check_position(row, col)?;
        if row != current {
            if row < current {
                return Err(file(&format_args!("row {row} comes after row {current}")));
            }
            table.push(current, &mut row_cells)?;
            row_cells.clear();
            current = row;
        }
        if row_cells.len() <= col {
            row_cells.resize_with(col + 1, || None);
        }
        if row_cells[col].replace(value).is_some() {
            return Err(file(&format_args!(
                "two cells at row {row}, column {}",
                col + 1
            )));
        }
    }
    table.push(current, &mut row_cells)
}

/// A cell as the text a user sees; whole floats lose their `.0` so `12` stays `12`.
fn raw_cell(d: &DataRef<'_>) -> Option<RawCell> {
    match d {
        DataRef::Empty => None,
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => RawCell::text(s),
        DataRef::SharedString(s) => RawCell::text(s),
        DataRef::Int(i) => RawCell::text(&i.to_string()),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            RawCell::text(&(*f as i64).to_string())
        }
        DataRef::Float(f) => RawCell::text(&f.to_string()),
        DataRef::Bool(b) => RawCell::text(&b.to_string()),
        DataRef::DateTime(dt) => RawCell::text(&dt.as_f64().to_string()),
        DataRef::Error(e) => RawCell::text(&format!("#{e:?}")),
    }
}

/// Refuses a zip bomb: unpacks every part once, counting, and stops as soon as the
/// parts together pass [`MAX_UNPACKED_BYTES`] or the shared-string table passes
/// [`MAX_SHARED_STRINGS_BYTES`]. Declared sizes are not trusted; calamine reads the same
/// bytes afterwards.
fn check_unpacked_size(bytes: &[u8]) -> Result<(), ImportErrors> {
    let file = |e: &dyn fmt::Display| {
        ImportErrors::file(unreadable(&format_args!("not an XLSX workbook: {e}")))
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| file(&e))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(|e| file(&e))?;
        // calamine finds parts case-insensitively, with `\` or `/`.
        let shared = part
            .name()
            .replace('\\', "/")
            .eq_ignore_ascii_case("xl/sharedStrings.xml");
        let mut left = MAX_UNPACKED_BYTES - total;
        if shared {
            left = left.min(MAX_SHARED_STRINGS_BYTES);
        }
        let n = std::io::copy(&mut (&mut part).take(left + 1), &mut std::io::sink())
            .map_err(|e| file(&e))?;
        if n > left {
            return Err(ImportErrors::file(
                if shared && n > MAX_SHARED_STRINGS_BYTES {
                    Problem::TooBig {
                        part: "the shared-string table",
                        max_mib: MAX_SHARED_STRINGS_BYTES >> 20,
                    }
                } else {
                    Problem::TooBig {
                        part: "the file",
                        max_mib: MAX_UNPACKED_BYTES >> 20,
                    }
                },
            ));
        }
        total += n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Columns.

/// A column of an upload sheet: how the importer finds it, and what the templates and
/// the documentation ([`templates`]) say about it. The one list of each sheet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    /// Canonical English name: an accepted header, and the name problems use.
    pub name: &'static str,
    /// Every accepted header spelling after normalising (brackets cut, lower case,
    /// spaces and `-` as `_`); the first is the Chinese header of the templates.
    pub aliases: &'static [&'static str],
    pub required: bool,
    pub kind: Kind,
    /// The cells of this column in the templates' example rows (`""`: left empty).
    pub examples: [&'static str; templates::EXAMPLE_ROWS],
    /// What an operator should know, Chinese then English.
    pub note: (&'static str, &'static str),
}

impl Column {
    /// The Chinese header the templates use.
    pub fn zh(&self) -> &'static str {
        self.aliases[0]
    }
}

/// What a column holds: the checks the importer makes of its cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Text of at most `max` characters, no control characters.
    Text { max: usize },
    /// A whole number from `min` to `max`.
    Integer { min: i64, max: i64 },
    /// A number up to `max`; above `min`, or from it when `min_allowed`.
    Number {
        min: f64,
        min_allowed: bool,
        max: f64,
    },
    /// Layouts separated by any of [`LAYOUT_SEPARATORS`], each text of at most `max`
    /// characters; at least one.
    Layouts { max: usize },
}

/// What separates the layouts of a 可选户型 cell.
pub const LAYOUT_SEPARATORS: [char; 6] = ['|', '、', ';', '；', ',', '，'];

const ID: Kind = Kind::Text { max: MAX_ID_CHARS };
const TEXT: Kind = Kind::Text {
    max: MAX_TEXT_CHARS,
};

/// The columns of the units sheet, in template order.
pub const UNIT_COLUMNS: &[Column] = &[
    Column {
        name: "id",
        aliases: &["房源编号", "房源id", "编号", "id", "unit_id"],
        required: true,
        kind: ID,
        examples: ["1-101", "1-102"],
        note: (
            "每套房源唯一，选房结果以此标识房源。",
            "Unique in the sheet; results name units by it.",
        ),
    },
    Column {
        name: "building",
        aliases: &["楼栋", "楼栋号", "building"],
        required: true,
        kind: TEXT,
        examples: ["1栋", "1栋"],
        note: ("", ""),
    },
    Column {
        name: "number",
        aliases: &["房号", "房间号", "number", "unit_number"],
        required: true,
        kind: TEXT,
        examples: ["101", "102"],
        note: (
            "按门牌填写；作为文本读取（0101 保留前导 0，XLSX 模板中该列为文本格式）。",
            "As on the door; read as text (0101 keeps its 0; the XLSX template formats the column as text).",
        ),
    },
    Column {
        name: "floor",
        aliases: &["楼层", "floor"],
        required: true,
        kind: Kind::Integer {
            min: *FLOORS.start(),
            max: *FLOORS.end(),
        },
        examples: ["1", "1"],
        note: ("地下层为负数。", "Below ground is negative."),
    },
    Column {
        name: "layout",
        aliases: &["户型", "layout"],
        required: true,
        kind: TEXT,
        examples: ["一房一厅", "两房一厅"],
        note: (
            "须与家庭表“可选户型”中的写法完全一致。",
            "Spelled exactly as in the families' 可选户型.",
        ),
    },
    Column {
        name: "area",
        aliases: &["面积", "建筑面积", "area"],
        required: true,
        kind: Kind::Number {
            min: 0.0,
            min_allowed: false,
            max: MAX_AREA,
        },
        examples: ["45.5", "62.8"],
        note: (
            "平方米；列名可带单位，如“面积(㎡)”。",
            "Square metres; the header may carry the unit, e.g. 面积(㎡).",
        ),
    },
    Column {
        name: "orientation",
        aliases: &["朝向", "orientation"],
        required: true,
        kind: TEXT,
        examples: ["南", "南北"],
        note: ("", ""),
    },
    Column {
        name: "rent",
        aliases: &["租金", "月租金", "rent"],
        required: true,
        kind: Kind::Number {
            min: 0.0,
            min_allowed: true,
            max: MAX_RENT,
        },
        examples: ["1200", "1650"],
        note: (
            "元/月；列名可带单位，如“租金（元/月）”。",
            "Yuan per month; the header may carry the unit, e.g. 租金（元/月）.",
        ),
    },
];

/// The columns of the families sheet, in template order.
pub const FAMILY_COLUMNS: &[Column] = &[
    Column {
        name: "id",
        aliases: &["家庭编号", "家庭id", "编号", "id", "family_id"],
        required: true,
        kind: ID,
        examples: ["F001", "F002"],
        note: (
            "每户唯一；即登录凭证中的 sub（同一人在各批次中相同）。",
            "Unique in the sheet; the family's login token names it as its sub (the same person keeps it across batches).",
        ),
    },
    Column {
        name: "name",
        aliases: &["姓名", "申请人", "申请人姓名", "name"],
        required: true,
        kind: TEXT,
        examples: ["张三丰", "李四"],
        note: (
            "导入时即脱敏（张三丰 → 张*丰），只保存脱敏后的姓名；已含 * 的姓名原样保留。租赁合同上的完整姓名另填“申请人全名”。",
            "Masked on import (张三丰 → 张*丰); only the masked name is kept. A name already holding * is kept as it is. The full name for the lease goes in 申请人全名.",
        ),
    },
    Column {
        name: "rank",
        aliases: &["排位", "排位号", "轮候排位", "rank"],
        required: true,
        kind: Kind::Integer {
            min: *RANKS.start(),
            max: *RANKS.end(),
        },
        examples: ["1", "2"],
        note: (
            "每户唯一，数字小者先选。",
            "Unique in the sheet; the smaller number chooses first.",
        ),
    },
    Column {
        name: "session",
        aliases: &["场次", "session"],
        required: false,
        kind: ID,
        examples: ["", ""],
        note: (
            "可留空，整列也可删去。管理台上传按排位自动排场次（每场户数见上传表单，场次名 S01、S02……），不读此列；仅按场次名排程的批次使用此列。",
            "May be left empty, or the column left out. The console's upload schedules sessions by rank (families per session as set in the form, sessions named S01, S02, …) and ignores this column; only a batch built with named sessions reads it.",
        ),
    },
    Column {
        name: "eligible_layouts",
        aliases: &["可选户型", "eligible_layouts", "layouts"],
        required: true,
        kind: Kind::Layouts {
            max: MAX_TEXT_CHARS,
        },
        examples: ["一房一厅、两房一厅", "两房一厅"],
        note: (
            "一格内可填多个户型，用 、 | ; ； , ， 任一分隔（CSV 中含英文逗号的格须加引号，模板使用 、）。",
            "Several layouts go in one cell, separated by any of 、 | ; ； , ， (in a CSV a cell holding a comma must be quoted; the templates use 、).",
        ),
    },
    Column {
        name: "full_name",
        aliases: &["申请人全名", "全名", "完整姓名", "full_name", "applicant_full_name"],
        required: false,
        kind: TEXT,
        examples: ["张三丰", ""],
        note: (
            "可留空，整列也可删去。主申请人的完整姓名，印在本户的租赁合同上、供审核人员核对；加密保存（需签约数据密钥），其他页面、大屏和导出只显示脱敏的“姓名”。",
            "May be left empty, or the column left out. The main applicant's full name, printed on the family's lease and shown to reviewers; stored encrypted (needs signing's data key). Other pages, the hall and exports show only the masked 姓名.",
        ),
    },
    Column {
        name: "id_number",
        aliases: &["身份证号", "身份证号码", "公民身份号码", "证件号码", "id_number", "id_card_number"],
        required: false,
        kind: Kind::Text {
            max: ID_NUMBER_CHARS,
        },
        examples: ["11010519491231002X", ""],
        note: (
            "可留空。18 位居民身份证号码，按 GB 11643 校验（出生日期、校验位；末位 x 视为 X）；须同时填写申请人全名；每户不得重复。加密保存，仅本户租赁合同与审核记录显示全号，其他地方显示 110105********002X。XLSX 模板中该列为文本格式（按数字输入会丢失末几位）。",
            "May be left empty. The 18-character resident identity number, checked per GB 11643 (birth date, check character; a final x is read as X); needs 申请人全名; unique in the sheet. Stored encrypted; only the family's lease and the review record show it whole, elsewhere 110105********002X. The XLSX template formats the column as text (typed as a number it loses its last digits).",
        ),
    },
];

/// A header cell without its bracketed unit, lower-cased: `面积(㎡)` → `面积`.
fn normalise_header(h: &str) -> String {
    let h = h.trim().trim_start_matches('\u{feff}');
    let h = h.split(['(', '（', '[', '【']).next().unwrap_or(h);
    h.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The index of each column in the header, or every header problem (on the header's
/// row).
fn locate(
    row: usize,
    header: &[String],
    columns: &[Column],
) -> Result<Vec<Option<usize>>, ImportErrors> {
    let names: Vec<String> = header.iter().map(|h| normalise_header(h)).collect();
    let mut errors = Vec::new();
    let mut found = Vec::with_capacity(columns.len());
    for c in columns {
        let hits: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| c.aliases.contains(&n.as_str()))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [] if c.required => errors.push(Problem::MissingColumn(c.name)),
            [] => found.push(None),
            [i] => found.push(Some(*i)),
            _ => errors.push(Problem::DuplicateColumn(c.name)),
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(ImportErrors(
            errors
                .into_iter()
                .map(|problem| RowError { row, problem })
                .collect(),
        ))
    }
}

/// Refuses text over `max` characters or with control characters.
fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), Problem> {
    if longer_than(s, max) {
        Err(Problem::TooLong { field, max })
    } else if s.chars().any(char::is_control) {
        Err(Problem::ControlCharacter { field })
    } else {
        Ok(())
    }
}

/// One data row, its cells in the order of the column list, for typed access.
struct Row<'a> {
    cells: &'a [String],
    columns: &'a [Column],
}

impl Row<'_> {
    fn get(&self, name: &'static str) -> &str {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| self.cells.get(i))
            .map_or("", String::as_str)
    }

    /// The kind of a column of the list (a name not in it is a bug of this module).
    fn kind(&self, name: &'static str) -> Kind {
        match self.columns.iter().find(|c| c.name == name) {
            Some(c) => c.kind,
            None => unreachable!("no column {name}"),
        }
    }

    /// The most characters a text column takes.
    fn max_chars(&self, name: &'static str) -> usize {
        match self.kind(name) {
            Kind::Text { max } | Kind::Layouts { max } => max,
            k => unreachable!("{name} is not text: {k:?}"),
        }
    }

    /// A required cell, as read (at most [`MAX_CELL_CHARS`]).
    fn text(&self, name: &'static str) -> Result<&str, Problem> {
        let s = self.get(name);
        if s.is_empty() {
            Err(Problem::MissingField(name))
        } else {
            Ok(s)
        }
    }

    /// A required text field ([`Kind::Text`]).
    fn field(&self, name: &'static str) -> Result<String, Problem> {
        let s = self.text(name)?;
        check_text(name, s, self.max_chars(name))?;
        Ok(s.to_owned())
    }

    /// A required whole number ([`Kind::Integer`]).
    fn integer(&self, name: &'static str) -> Result<i64, Problem> {
        let Kind::Integer { min, max } = self.kind(name) else {
            unreachable!("{name} is not an integer column")
        };
        let range = min..=max;
        let s = self.text(name)?;
        // XLSX cells typed as text or CSVs from some tools write `12.0` for integers.
        let s = s.strip_suffix(".0").unwrap_or(s);
        let v: i64 = s.parse().map_err(|_| Problem::BadNumber {
            field: name,
            value: echo(s),
        })?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(Problem::OutOfRange {
                field: name,
                value: echo(s),
                allowed: format!("{} to {}", range.start(), range.end()),
            })
        }
    }

    /// A required finite number ([`Kind::Number`]): above `min` (or from `min` when
    /// `min_allowed`) and at most `max`.
    fn real(&self, name: &'static str) -> Result<f64, Problem> {
        let Kind::Number {
            min,
            min_allowed,
            max,
        } = self.kind(name)
        else {
            unreachable!("{name} is not a number column")
        };
        let s = self.text(name)?;
        let v = match s.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                return Err(Problem::BadNumber {
                    field: name,
                    value: echo(s),
                })
            }
        };
        let above_min = if min_allowed { v >= min } else { v > min };
        if above_min && v <= max {
            Ok(v)
        } else {
            Err(Problem::OutOfRange {
                field: name,
                value: echo(s),
                allowed: if min_allowed {
                    format!("{min} to {max}")
                } else {
                    format!("above {min}, up to {max}")
                },
            })
        }
    }
}

/// Parses every row; returns the values, or the bad rows (see [`MAX_PROBLEMS`]).
fn parse_rows<T>(
    table: Table,
    columns: &[Column],
    mut parse: impl FnMut(usize, &Row<'_>) -> Result<T, Problem>,
) -> Result<Vec<T>, ImportErrors> {
    let mut out = Vec::with_capacity(table.rows.len());
    let mut problems = Problems::default();
    for (row, cells) in &table.rows {
        let parsed = cells
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|cells| parse(*row, &Row { cells, columns }));
        match parsed {
            Ok(v) => out.push(v),
            Err(problem) => problems.push(*row, problem),
        }
    }
    problems.into_result().map(|()| out)
}

/// Remembers the first row of each key, to report later duplicates.
struct FirstSeen<K>(HashMap<K, usize>);

impl<K: std::hash::Hash + Eq> FirstSeen<K> {
    fn new() -> Self {
        Self(HashMap::new())
    }
    /// `Err(first_row)` when the key was seen before.
    fn check(&mut self, key: K, row: usize) -> Result<(), usize> {
        match self.0.get(&key) {
            Some(&first) => Err(first),
            None => {
                self.0.insert(key, row);
                Ok(())
            }
        }
    }
}

fn parse_units(table: Table) -> Result<Vec<Unit>, ImportErrors> {
    let mut ids = FirstSeen::new();
    parse_rows(table, UNIT_COLUMNS, |row, r| {
        let unit = Unit {
            id: UnitId(r.field("id")?),
            building: r.field("building")?,
            number: r.field("number")?,
            floor: r.integer("floor")? as i32,
            layout: Layout(r.field("layout")?),
            area: r.real("area")?,
            orientation: r.field("orientation")?,
            rent: r.real("rent")?,
        };
        ids.check(unit.id.0.clone(), row)
            .map_err(|first_row| Problem::DuplicateId {
                id: echo(&unit.id.0),
                first_row,
            })?;
        Ok(unit)
    })
}

/// The optional identity of a row (see [`families_with_identities`]).
fn identity_of(r: &Row<'_>) -> Result<Option<Identity>, Problem> {
    let full_name = r.get("full_name");
    check_text("full_name", full_name, r.max_chars("full_name"))?;
    let id = r.get("id_number");
    let id_number = if id.is_empty() {
        None
    } else {
        Some(IdNumber::parse(id).map_err(Problem::BadIdNumber)?)
    };
    if id_number.is_some() && full_name.is_empty() {
        return Err(Problem::IdNumberWithoutName);
    }
    if full_name.is_empty() {
        return Ok(None);
    }
    Ok(Some(Identity {
        full_name: Some(full_name.to_owned()),
        id_number,
    }))
}

fn parse_families(table: Table) -> Result<Vec<(usize, Family, Option<Identity>)>, ImportErrors> {
    let mut ids = FirstSeen::new();
    let mut ranks = FirstSeen::new();
    let mut id_numbers = FirstSeen::new();
    parse_rows(table, FAMILY_COLUMNS, |row, r| {
        // Ranks count from 1; 0 would sort before every real family.
        let rank = r.integer("rank")? as u32;
        let eligible_layouts = split_layouts(r.get("eligible_layouts"));
        if eligible_layouts.is_empty() {
            return Err(Problem::MissingField("eligible_layouts"));
        }
        for layout in &eligible_layouts {
            check_text(
                "eligible_layouts",
                &layout.0,
                r.max_chars("eligible_layouts"),
            )?;
        }
        let session = r.get("session");
        check_text("session", session, r.max_chars("session"))?;
        let family = Family {
            id: FamilyId(r.field("id")?),
            name: mask_name(&r.field("name")?),
            rank,
            session: SessionId(session.to_owned()),
            eligible_layouts,
        };
        ids.check(family.id.0.clone(), row)
            .map_err(|first_row| Problem::DuplicateId {
                id: echo(&family.id.0),
                first_row,
            })?;
        ranks
            .check(rank, row)
            .map_err(|first_row| Problem::DuplicateRank { rank, first_row })?;
        let identity = identity_of(r)?;
        if let Some(n) = identity.as_ref().and_then(|i| i.id_number.as_ref()) {
            id_numbers
                .check(n.clone(), row)
                .map_err(|first_row| Problem::DuplicateIdNumber {
                    masked: n.masked(),
                    first_row,
                })?;
        }
        Ok((row, family, identity))
    })
}

/// Refuses every family (by its row) none of whose eligible layouts any unit has: such
/// a family could take part in every session and never be offered a flat. Refused rather
/// than warned about because the cause is nearly always a spelling that differs between
/// the sheets, which the operator fixes in a minute, while a family silently left without
/// any possible flat is found only on the day.
pub fn check_layouts(units: &[Unit], families: &[(usize, Family)]) -> Result<(), ImportErrors> {
    let offered: std::collections::HashSet<&Layout> = units.iter().map(|u| &u.layout).collect();
    let mut problems = Problems::default();
    for (row, f) in families {
        if !f.eligible_layouts.iter().any(|l| offered.contains(l)) {
            let layouts: Vec<&str> = f.eligible_layouts.iter().map(|l| l.0.as_str()).collect();
            problems.push(
                *row,
                Problem::NoUnitOfLayouts {
                    layouts: echo(&layouts.join("、")),
                },
            );
        }
    }
    problems.into_result()
}

// ---------------------------------------------------------------------------
// Batch assembly.

/// When one session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSlot {
    pub start: Millis,
    /// Length of the formal window in milliseconds.
    pub window_ms: i64,
}

/// How families are put into formal sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionPlan {
    /// Families keep the 场次 of their row; each named session gets its slot here.
    Named(BTreeMap<SessionId, SessionSlot>),
    /// Families in rank order, `per_session` to a session, sessions `interval_ms`
    /// apart from `first_start`; the 场次 column is ignored. Sessions are named
    /// `S01`, `S02`, ...
    Auto {
        per_session: usize,
        first_start: Millis,
        interval_ms: i64,
        window_ms: i64,
    },
}

/// The batch-wide settings that no sheet carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub id: BatchId,
    pub name: String,
    pub preselect_start: Millis,
    pub preselect_end: Option<Millis>,
    /// Local time offset from UTC in minutes (480 for China).
    pub utc_offset_minutes: i32,
}

/// Why imported rows do not make a batch.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("family {0} has no session (场次) and the plan names sessions")]
    NoSession(FamilyId),
    #[error("family {0} names session {1}, which the plan does not schedule")]
    UnscheduledSession(FamilyId, SessionId),
    #[error("session {0} is scheduled but no family belongs to it")]
    EmptySession(SessionId),
    #[error("sessions must hold rank ranges in time order: session {later} starts later than {earlier} but holds a better rank")]
    RanksOutOfOrder {
        earlier: SessionId,
        later: SessionId,
    },
    #[error(
        "automatic plan needs per_session >= 1, a positive window and an interval of 0 or more"
    )]
    BadPlan,
    #[error("session {0} would start or end outside the range of time stamps")]
    TimeOutOfRange(SessionId),
    #[error("{0}")]
    Invalid(#[from] BatchError),
}

/// Builds a batch from imported units and families under a session plan, and checks
/// it with [`Batch::validate`].
pub fn build_batch(
    meta: BatchMeta,
    units: Vec<Unit>,
    mut families: Vec<Family>,
    plan: &SessionPlan,
) -> Result<Batch, BuildError> {
    families.sort_by_key(|f| f.rank);
    let sessions = match plan {
        SessionPlan::Auto {
            per_session,
            first_start,
            interval_ms,
            window_ms,
        } => {
            if *per_session == 0 || *window_ms <= 0 || *interval_ms < 0 {
                return Err(BuildError::BadPlan);
            }
            let count = families.len().div_ceil(*per_session);
            let width = count.to_string().len().max(2);
            let mut sessions = Vec::with_capacity(count);
            for (i, chunk) in families.chunks_mut(*per_session).enumerate() {
                let id = SessionId(format!("S{:0width$}", i + 1));
                // Operators type these durations; overflow is a refusal, not a wrap.
                let start = i64::try_from(i)
                    .ok()
                    .and_then(|i| interval_ms.checked_mul(i))
                    .and_then(|offset| first_start.0.checked_add(offset))
                    .filter(|start| start.checked_add(*window_ms).is_some())
                    .ok_or_else(|| BuildError::TimeOutOfRange(id.clone()))?;
                for f in chunk.iter_mut() {
                    f.session = id.clone();
                }
                sessions.push(Session {
                    id,
                    kind: SessionKind::Formal,
                    start: Millis(start),
                    window_ms: *window_ms,
                    families: chunk.iter().map(|f| f.id.clone()).collect(),
                });
            }
            sessions
        }
        SessionPlan::Named(slots) => {
            let mut members: BTreeMap<&SessionId, Vec<FamilyId>> = BTreeMap::new();
            for f in &families {
                if f.session.0.is_empty() {
                    return Err(BuildError::NoSession(f.id.clone()));
                }
                if !slots.contains_key(&f.session) {
                    return Err(BuildError::UnscheduledSession(
                        f.id.clone(),
                        f.session.clone(),
                    ));
                }
                // Families are sorted by rank, so each list is in rank order.
                members.entry(&f.session).or_default().push(f.id.clone());
            }
            let mut sessions = Vec::with_capacity(slots.len());
            for (id, slot) in slots {
                let fams = members.remove(id).unwrap_or_default();
                if fams.is_empty() {
                    return Err(BuildError::EmptySession(id.clone()));
                }
                if slot.start.0.checked_add(slot.window_ms).is_none() {
                    return Err(BuildError::TimeOutOfRange(id.clone()));
                }
                sessions.push(Session {
                    id: id.clone(),
                    kind: SessionKind::Formal,
                    start: slot.start,
                    window_ms: slot.window_ms,
                    families: fams,
                });
            }
            check_rank_ranges(&sessions, &families)?;
            sessions
        }
    };
    let batch = Batch {
        id: meta.id,
        name: meta.name,
        preselect_start: meta.preselect_start,
        preselect_end: meta.preselect_end,
        utc_offset_minutes: meta.utc_offset_minutes,
        units,
        families,
        sessions,
    };
    batch.validate()?;
    Ok(batch)
}

/// Earlier sessions hold better ranks: ordered by start, each session's best rank must
/// come after the previous session's worst.
fn check_rank_ranges(sessions: &[Session], families: &[Family]) -> Result<(), BuildError> {
    let rank: HashMap<&FamilyId, u32> = families.iter().map(|f| (&f.id, f.rank)).collect();
    let mut ordered: Vec<(&Session, u32, u32)> = sessions
        .iter()
        .map(|s| {
            let r = s.families.iter().filter_map(|f| rank.get(f).copied());
            (s, r.clone().min().unwrap_or(0), r.max().unwrap_or(0))
        })
        .collect();
    ordered.sort_by_key(|(s, first, _)| (s.start, *first));
    for w in ordered.windows(2) {
        let (earlier, _, earlier_last) = w[0];
        let (later, later_first, _) = w[1];
        if later_first < earlier_last {
            return Err(BuildError::RanksOutOfOrder {
                earlier: earlier.id.clone(),
                later: later.id.clone(),
            });
        }
    }
    Ok(())
}
