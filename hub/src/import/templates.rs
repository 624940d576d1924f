//! Upload templates: the sheets operators download, fill and upload, made from the
//! importer's own column lists ([`UNIT_COLUMNS`], [`FAMILY_COLUMNS`]) so the files, the
//! console and `docs/operations.md` cannot drift from what the importer accepts.
//!
//! Each template is a header row of the Chinese column names and [`EXAMPLE_ROWS`]
//! example rows that import as they are. The gateway serves them as CSV (UTF-8 with a
//! BOM, [`Sheet::csv`]) and as XLSX (written there from [`Sheet::columns`], with a
//! second sheet of [`Sheet::notes`]; the importer reads only the first).

use super::{
    Column, Kind, FAMILY_COLUMNS, LAYOUT_SEPARATORS, MAX_CELL_CHARS, MAX_COLUMNS, MAX_ROWS,
    MAX_SHARED_STRINGS_BYTES, MAX_UNPACKED_BYTES, UNIT_COLUMNS,
};

/// Example rows in each template.
pub const EXAMPLE_ROWS: usize = 2;

/// An upload sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sheet {
    /// 房源表: the units of a batch.
    Units,
    /// 家庭表: the families of a batch.
    Families,
}

impl Sheet {
    pub const ALL: [Sheet; 2] = [Sheet::Units, Sheet::Families];

    /// The columns, in template order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Sheet::Units => UNIT_COLUMNS,
            Sheet::Families => FAMILY_COLUMNS,
        }
    }

    /// The upload form's field and the template's file stem: `units`, `families`.
    pub fn name(self) -> &'static str {
        match self {
            Sheet::Units => "units",
            Sheet::Families => "families",
        }
    }

    /// The sheet's title, Chinese then English.
    pub fn title(self) -> (&'static str, &'static str) {
        match self {
            Sheet::Units => ("房源表", "Units"),
            Sheet::Families => ("家庭表", "Families"),
        }
    }

    /// The header row: each column's Chinese name.
    pub fn header(self) -> Vec<&'static str> {
        self.columns().iter().map(Column::zh).collect()
    }

    /// The example rows, cells in column order (`""` where left empty).
    pub fn examples(self) -> Vec<Vec<&'static str>> {
        (0..EXAMPLE_ROWS)
            .map(|i| self.columns().iter().map(|c| c.examples[i]).collect())
            .collect()
    }

    /// The CSV template: a UTF-8 BOM (so Excel shows the Chinese), the header row and
    /// the example rows.
    pub fn csv(self) -> Vec<u8> {
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut w = csv::Writer::from_writer(&mut out);
            let rows = std::iter::once(self.header()).chain(self.examples());
            for row in rows {
                // Writing to memory cannot fail.
                w.write_record(row).expect("CSV into memory");
            }
            w.flush().expect("CSV into memory");
        }
        out
    }

    /// What the notes of each column say, as rows for a notes sheet: Chinese header,
    /// English header, type, required, example, notes (each Chinese then English).
    pub fn notes(self) -> Vec<[String; 6]> {
        self.columns()
            .iter()
            .map(|c| {
                let (type_zh, type_en) = describe(c.kind);
                let required = if c.required { "是 yes" } else { "否 no" };
                [
                    c.zh().to_owned(),
                    c.name.to_owned(),
                    format!("{type_zh}\n{type_en}"),
                    required.to_owned(),
                    example(c),
                    join_lines(c.note),
                ]
            })
            .collect()
    }
}

/// Every example of a column, joined with ` / `; `(empty)` when all are empty.
pub fn example(c: &Column) -> String {
    let shown: Vec<&str> = c
        .examples
        .iter()
        .copied()
        .filter(|e| !e.is_empty())
        .collect();
    if shown.is_empty() {
        "（空）(empty)".to_owned()
    } else {
        shown.join(" / ")
    }
}

fn join_lines((zh, en): (&str, &str)) -> String {
    if zh.is_empty() {
        en.to_owned()
    } else {
        format!("{zh}\n{en}")
    }
}

/// A column kind in words, Chinese then English.
pub fn describe(kind: Kind) -> (String, String) {
    match kind {
        Kind::Text { max } => (
            format!("文本，最多 {max} 字"),
            format!("text, up to {max} characters"),
        ),
        Kind::Integer { min, max } => (
            format!("整数，{min} 至 {max}"),
            format!("whole number, {min} to {max}"),
        ),
        Kind::Number {
            min,
            min_allowed: true,
            max,
        } => (
            format!("数字，{min} 至 {max}"),
            format!("number, {min} to {max}"),
        ),
        Kind::Number {
            min,
            min_allowed: false,
            max,
        } => (
            format!("数字，大于 {min}，至多 {max}"),
            format!("number above {min}, up to {max}"),
        ),
        Kind::Layouts { max } => (
            format!("户型列表，每项最多 {max} 字"),
            format!("list of layouts, each up to {max} characters"),
        ),
    }
}

/// `200000` → `200,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// What holds for every sheet, Chinese then English: headers, layouts, encodings and
/// limits.
pub fn general_notes() -> Vec<(String, String)> {
    let separators: Vec<String> = LAYOUT_SEPARATORS.iter().map(|c| c.to_string()).collect();
    vec![
        (
            "第一行非空行为表头；列的顺序不限，中文或英文列名均可，列名可带括号单位（面积(㎡)）。其他列忽略。空行跳过。XLSX 只读第一个工作表。".to_owned(),
            "The first non-blank row is the header. Columns may come in any order, with Chinese or English names; a header may carry a unit in brackets (面积(㎡)). Other columns are ignored and blank rows skipped. Only the first sheet of an XLSX workbook is read.".to_owned(),
        ),
        (
            format!("可选户型：一格内多个户型用 {} 任一分隔。", separators.join(" ")),
            format!("可选户型: several layouts in one cell, separated by any of {}.", separators.join(" ")),
        ),
        (
            "CSV 须为 UTF-8 编码，可带 BOM（Excel 的“CSV UTF-8”格式）。GBK 编码的 CSV（中文版 Excel 的普通“CSV”）会被拒绝，每个非 UTF-8 的行报错“not UTF-8 text”，不导入任何数据；请另存为“CSV UTF-8”或上传 XLSX。".to_owned(),
            "A CSV must be UTF-8, with or without a BOM (Excel's \"CSV UTF-8\"). A GBK CSV (plain \"CSV\" from Excel on Chinese Windows) is refused: each row that is not UTF-8 is reported as \"not UTF-8 text\" (a Chinese header fails on row 1) and nothing is imported. Save as \"CSV UTF-8\", or upload XLSX.".to_owned(),
        ),
        (
            format!(
                "上限（CSV 与 XLSX）：{} 行（含表头）、{} 列、每格 {} 字；XLSX 解压后不超过 {} MiB，共享字符串表不超过 {} MiB。超出即整个文件被拒绝（超长的格只报该行）。",
                thousands(MAX_ROWS as u64),
                MAX_COLUMNS,
                thousands(MAX_CELL_CHARS as u64),
                MAX_UNPACKED_BYTES >> 20,
                MAX_SHARED_STRINGS_BYTES >> 20,
            ),
            format!(
                "Limits (CSV and XLSX): {} rows (the header included), {} columns, {} characters per cell; an XLSX file may unpack to at most {} MiB, its shared-string table to {} MiB. Past one the whole file is refused (a cell too long is a problem of its row only).",
                thousands(MAX_ROWS as u64),
                MAX_COLUMNS,
                thousands(MAX_CELL_CHARS as u64),
                MAX_UNPACKED_BYTES >> 20,
                MAX_SHARED_STRINGS_BYTES >> 20,
            ),
        ),
        (
            "有任一行出错时，所有出错的行连同行号（表头为第 1 行）一并列出，不导入任何数据。".to_owned(),
            "When any row is bad, every bad row is listed with its row number (the header is row 1) and nothing is imported.".to_owned(),
        ),
    ]
}
