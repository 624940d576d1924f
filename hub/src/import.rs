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
//! | Families      | 家庭编号 | 姓名 | 排位 | 场次    | 可选户型          |
//! |---------------|----------|------|------|---------|-------------------|
//! | English       | id       | name | rank | session | eligible_layouts  |
//!
//! A header may carry a unit in brackets (`面积(㎡)`, `租金（元/月）`). Eligible layouts
//! are separated by `|`, `、`, `;`, `；`, `,` or `，`. The session column may be left
//! out when sessions are scheduled automatically ([`SessionPlan::Auto`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Cursor;
use std::path::Path;

use calamine::{Data, Reader};

use crate::domain::{
    Batch, BatchError, BatchId, Family, FamilyId, Layout, Session, SessionId, SessionKind, Unit,
    UnitId,
};
use crate::time::Millis;

/// One bad row of an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 1-based row as a spreadsheet shows it (header = 1); 0 when the file as a whole
    /// cannot be read.
    pub row: usize,
    pub problem: Problem,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.row == 0 {
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
}

/// Every bad row of an import; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} bad row(s): {}", .0.len(), summary(.0))]
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
    parse_units(read_table(format, bytes)?)
}

/// Families from a CSV or XLSX file's bytes.
pub fn families(format: Format, bytes: &[u8]) -> Result<Vec<Family>, ImportErrors> {
    parse_families(read_table(format, bytes)?)
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
    cell.split(['|', '、', ';', '；', ',', '，'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Layout::new)
        .collect()
}

// ---------------------------------------------------------------------------
// Tables: both formats become rows of strings with their spreadsheet row number.

/// A sheet as text: the header row and the data rows with their row numbers.
struct Table {
    header: Vec<String>,
    rows: Vec<(usize, Result<Vec<String>, Problem>)>,
}

fn read_table(format: Format, bytes: &[u8]) -> Result<Table, ImportErrors> {
    match format {
        Format::Csv => read_csv(bytes),
        Format::Xlsx => read_xlsx(bytes),
    }
}

fn read_csv(bytes: &[u8]) -> Result<Table, ImportErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let line = rdr.position().line() as usize;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(line, |p| p.line() as usize);
                return Err(ImportErrors(vec![RowError {
                    row,
                    problem: Problem::Unreadable(e.to_string()),
                }]));
            }
        }
        // The csv reader skips blank lines but counts a record from before them; a
        // spreadsheet shows them as rows, so count newlines up to the record's first byte.
        let row = record
            .position()
            .map_or(line, |p| lines.line_of(p.byte() as usize));
        let cells: Result<Vec<String>, Problem> = record
            .iter()
            .map(|c| {
                std::str::from_utf8(c)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| Problem::NotUtf8)
            })
            .collect();
        match (&header, cells) {
            (None, Ok(cells)) => header = Some(cells),
            (None, Err(p)) => return Err(ImportErrors(vec![RowError { row, problem: p }])),
            (Some(_), cells) => {
                if cells.as_ref().is_ok_and(|c| c.iter().all(String::is_empty)) {
                    continue;
                }
                rows.push((row, cells));
            }
        }
    }
    let header = header.ok_or_else(|| ImportErrors::file(Problem::NoRows))?;
    Ok(Table { header, rows })
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

fn read_xlsx(bytes: &[u8]) -> Result<Table, ImportErrors> {
    let unreadable = |e: &dyn fmt::Display| ImportErrors::file(Problem::Unreadable(e.to_string()));
    let mut wb =
        calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| unreadable(&e))?;
    let range = match wb.worksheet_range_at(0) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(unreadable(&e)),
        None => return Err(unreadable(&"the workbook has no sheet")),
    };
    // The range starts at the first used cell; row numbers must count from A1.
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let pad = first_col as usize;
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (i, r) in range.rows().enumerate() {
        let row = first_row as usize + i + 1;
        let mut cells: Vec<String> = vec![String::new(); pad];
        cells.extend(r.iter().map(cell_text));
        if header.is_none() {
            header = Some(cells);
            continue;
        }
        if cells.iter().all(String::is_empty) {
            continue;
        }
        rows.push((row, Ok(cells)));
    }
    let header = header.ok_or_else(|| ImportErrors::file(Problem::NoRows))?;
    Ok(Table { header, rows })
}

/// A cell as the text a user sees; whole floats lose their `.0` so `12` stays `12`.
fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_owned(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => dt.as_f64().to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

// ---------------------------------------------------------------------------
// Columns.

/// A column: its canonical English name and the header spellings that mean it.
struct Column {
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

const UNIT_COLUMNS: &[Column] = &[
    col("id", &["房源编号", "房源id", "编号", "id", "unit_id"]),
    col("building", &["楼栋", "楼栋号", "building"]),
    col("number", &["房号", "房间号", "number", "unit_number"]),
    col("floor", &["楼层", "floor"]),
    col("layout", &["户型", "layout"]),
    col("area", &["面积", "建筑面积", "area"]),
    col("orientation", &["朝向", "orientation"]),
    col("rent", &["租金", "月租金", "rent"]),
];

const FAMILY_COLUMNS: &[Column] = &[
    col("id", &["家庭编号", "家庭id", "编号", "id", "family_id"]),
    col("name", &["姓名", "申请人", "申请人姓名", "name"]),
    col("rank", &["排位", "排位号", "轮候排位", "rank"]),
    Column {
        name: "session",
        aliases: &["场次", "session"],
        required: false,
    },
    col(
        "eligible_layouts",
        &["可选户型", "eligible_layouts", "layouts"],
    ),
];

const fn col(name: &'static str, aliases: &'static [&'static str]) -> Column {
    Column {
        name,
        aliases,
        required: true,
    }
}

/// A header cell without its bracketed unit, lower-cased: `面积(㎡)` → `面积`.
fn normalise_header(h: &str) -> String {
    let h = h.trim().trim_start_matches('\u{feff}');
    let h = h.split(['(', '（', '[', '【']).next().unwrap_or(h);
    h.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The index of each column in the header, or every header problem (row 1).
fn locate(header: &[String], columns: &[Column]) -> Result<Vec<Option<usize>>, ImportErrors> {
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
                .map(|problem| RowError { row: 1, problem })
                .collect(),
        ))
    }
}

/// One data row with the located columns, for typed access.
struct Row<'a> {
    cells: &'a [String],
    at: &'a [Option<usize>],
    columns: &'a [Column],
}

impl Row<'_> {
    fn get(&self, name: &'static str) -> &str {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| self.at[i])
            .and_then(|i| self.cells.get(i))
            .map_or("", String::as_str)
    }

    fn text(&self, name: &'static str) -> Result<String, Problem> {
        let s = self.get(name);
        if s.is_empty() {
            Err(Problem::MissingField(name))
        } else {
            Ok(s.to_owned())
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, Problem> {
        let s = self.text(name)?;
        // XLSX cells typed as text or CSVs from some tools write `12.0` for integers.
        let s = s.strip_suffix(".0").unwrap_or(&s);
        s.parse().map_err(|_| Problem::BadNumber {
            field: name,
            value: s.to_owned(),
        })
    }

    fn real(&self, name: &'static str, min: f64) -> Result<f64, Problem> {
        let s = self.text(name)?;
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= min => Ok(v),
            _ => Err(Problem::BadNumber {
                field: name,
                value: s,
            }),
        }
    }
}

/// Parses every row; returns the values, or every bad row.
fn parse_rows<T>(
    table: Table,
    columns: &[Column],
    mut parse: impl FnMut(usize, &Row<'_>) -> Result<T, Problem>,
) -> Result<Vec<T>, ImportErrors> {
    let at = locate(&table.header, columns)?;
    if table.rows.is_empty() {
        return Err(ImportErrors(vec![RowError {
            row: 1,
            problem: Problem::NoRows,
        }]));
    }
    let mut out = Vec::with_capacity(table.rows.len());
    let mut errors = Vec::new();
    for (row, cells) in &table.rows {
        let parsed = cells.as_ref().map_err(Clone::clone).and_then(|cells| {
            parse(
                *row,
                &Row {
                    cells,
                    at: &at,
                    columns,
                },
            )
        });
        match parsed {
            Ok(v) => out.push(v),
            Err(problem) => errors.push(RowError { row: *row, problem }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ImportErrors(errors))
    }
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
            id: UnitId(r.text("id")?),
            building: r.text("building")?,
            number: r.text("number")?,
            floor: r.number("floor")?,
            layout: Layout(r.text("layout")?),
            area: r.real("area", f64::MIN_POSITIVE)?,
            orientation: r.text("orientation")?,
            rent: r.real("rent", 0.0)?,
        };
        ids.check(unit.id.0.clone(), row)
            .map_err(|first_row| Problem::DuplicateId {
                id: unit.id.0.clone(),
                first_row,
            })?;
        Ok(unit)
    })
}

fn parse_families(table: Table) -> Result<Vec<Family>, ImportErrors> {
    let mut ids = FirstSeen::new();
    let mut ranks = FirstSeen::new();
    parse_rows(table, FAMILY_COLUMNS, |row, r| {
        let rank: u32 = r.number("rank")?;
        if rank == 0 {
            // Ranks count from 1; 0 would sort before every real family.
            return Err(Problem::BadNumber {
                field: "rank",
                value: "0".into(),
            });
        }
        let eligible_layouts = split_layouts(r.get("eligible_layouts"));
        if eligible_layouts.is_empty() {
            return Err(Problem::MissingField("eligible_layouts"));
        }
        let family = Family {
            id: FamilyId(r.text("id")?),
            name: mask_name(&r.text("name")?),
            rank,
            session: SessionId(r.get("session").to_owned()),
            eligible_layouts,
        };
        ids.check(family.id.0.clone(), row)
            .map_err(|first_row| Problem::DuplicateId {
                id: family.id.0.clone(),
                first_row,
            })?;
        ranks
            .check(rank, row)
            .map_err(|first_row| Problem::DuplicateRank { rank, first_row })?;
        Ok(family)
    })
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
    #[error("automatic plan needs per_session >= 1 and a positive window")]
    BadPlan,
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
            if *per_session == 0 || *window_ms <= 0 {
                return Err(BuildError::BadPlan);
            }
            let count = families.len().div_ceil(*per_session);
            let width = count.to_string().len().max(2);
            let mut sessions = Vec::with_capacity(count);
            for (i, chunk) in families.chunks_mut(*per_session).enumerate() {
                let id = SessionId(format!("S{:0width$}", i + 1));
                for f in chunk.iter_mut() {
                    f.session = id.clone();
                }
                sessions.push(Session {
                    id,
                    kind: SessionKind::Formal,
                    start: first_start.plus_ms(interval_ms * i as i64),
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
