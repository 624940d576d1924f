//! `GET /api/ops/templates/{units,families}.{csv,xlsx}` (operator token): the upload
//! templates, made from the importer's column lists (`xuanfang_hub::import::templates`),
//! so what an operator downloads, fills and uploads is what the importer reads.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, FormatAlign, Workbook, XlsxError};
use xuanfang_hub::import::templates::{self, Sheet};
use xuanfang_hub::import::Kind;
use xuanfang_hub::ErrorCode;

use crate::caller::Operator;
use crate::http_error::ApiError;
use crate::ops::content_disposition;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn attachment(content_type: &'static str, name: String, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, content_disposition(&name)),
        ],
        body,
    )
        .into_response()
}

fn csv(sheet: Sheet) -> Response {
    attachment(
        "text/csv; charset=utf-8",
        format!("{}-template.csv", sheet.name()),
        sheet.csv(),
    )
}

fn xlsx(sheet: Sheet) -> Result<Response, ApiError> {
    let bytes = write_xlsx(sheet).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal).detail(e.to_string())
    })?;
    Ok(attachment(
        XLSX,
        format!("{}-template.xlsx", sheet.name()),
        bytes,
    ))
}

/// `GET /api/ops/templates/units.csv`.
pub async fn units_csv(_op: Operator) -> Response {
    csv(Sheet::Units)
}

/// `GET /api/ops/templates/units.xlsx`.
pub async fn units_xlsx(_op: Operator) -> Result<Response, ApiError> {
    xlsx(Sheet::Units)
}

/// `GET /api/ops/templates/families.csv`.
pub async fn families_csv(_op: Operator) -> Response {
    csv(Sheet::Families)
}

/// `GET /api/ops/templates/families.xlsx`.
pub async fn families_xlsx(_op: Operator) -> Result<Response, ApiError> {
    xlsx(Sheet::Families)
}

/// The XLSX template: first sheet the header and example rows (numbers as numbers, text
/// columns formatted as text so `0101` keeps its 0), second sheet 说明 Notes with every
/// column's type, whether it is required, its example and notes, then the general
/// notes. The importer reads only the first sheet.
pub fn write_xlsx(sheet: Sheet) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let text = Format::new().set_num_format("@");
    let wrap = Format::new().set_text_wrap().set_align(FormatAlign::Top);
    let (title_zh, title_en) = sheet.title();

    let ws = wb.add_worksheet();
    ws.set_name(title_zh)?;
    for (c, column) in sheet.columns().iter().enumerate() {
        let c = c as u16;
        ws.set_column_width(c, 14)?;
        let is_text = matches!(column.kind, Kind::Text { .. } | Kind::Layouts { .. });
        if is_text {
            ws.set_column_format(c, &text)?;
        }
        ws.write_string_with_format(0, c, column.zh(), &bold)?;
        for (r, cell) in sheet
            .examples()
            .iter()
            .map(|row| row[c as usize])
            .enumerate()
        {
            let r = r as u32 + 1;
            match cell.parse::<f64>() {
                _ if cell.is_empty() => {}
                Ok(n) if !is_text => {
                    ws.write_number(r, c, n)?;
                }
                _ => {
                    ws.write_string_with_format(r, c, cell, &text)?;
                }
            }
        }
    }
    ws.set_freeze_panes(1, 0)?;

    let notes = wb.add_worksheet();
    notes.set_name("说明 Notes")?;
    notes.write_string_with_format(0, 0, format!("{title_zh} {title_en}"), &bold)?;
    let head = [
        "列名 header",
        "English",
        "类型 type",
        "必填 required",
        "示例 example",
        "说明 notes",
    ];
    for (c, (h, width)) in head.iter().zip([12, 18, 30, 12, 22, 70]).enumerate() {
        notes.set_column_width(c as u16, width)?;
        notes.write_string_with_format(2, c as u16, *h, &bold)?;
    }
    let mut r = 3;
    for row in sheet.notes() {
        for (c, cell) in row.iter().enumerate() {
            notes.write_string_with_format(r, c as u16, cell, &wrap)?;
        }
        r += 1;
    }
    r += 1;
    for (zh, en) in templates::general_notes() {
        // Excel does not fit merged cells' rows to their text.
        notes.merge_range(r, 0, r, 5, &format!("{zh}\n{en}"), &wrap)?;
        notes.set_row_height(r, 48)?;
        r += 1;
    }
    wb.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xuanfang_hub::import::{self, Format};

    #[test]
    fn xlsx_templates_import_as_the_csv_templates_do() {
        let units = |f, b: &[u8]| import::units(f, b).unwrap();
        let families = |f, b: &[u8]| import::families(f, b).unwrap();
        assert_eq!(
            units(Format::Xlsx, &write_xlsx(Sheet::Units).unwrap()),
            units(Format::Csv, &Sheet::Units.csv())
        );
        assert_eq!(
            families(Format::Xlsx, &write_xlsx(Sheet::Families).unwrap()),
            families(Format::Csv, &Sheet::Families.csv())
        );
    }
}
