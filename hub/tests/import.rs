//! Import of units and families from CSV/XLSX: a bad row is named and nothing is
//! imported; Chinese or English headers; BOM; batch assembly.

use std::collections::BTreeMap;

use rust_xlsxwriter::Workbook;
use xuanfang_hub::import::{
    self, build_batch, mask_name, split_layouts, BatchMeta, BuildError, ImportErrors, Problem,
    RowError, SessionPlan, SessionSlot, MAX_CELL_CHARS, MAX_COLUMNS, MAX_ECHO_CHARS, MAX_ID_CHARS,
    MAX_PROBLEMS, MAX_ROWS, MAX_TEXT_CHARS,
};
use xuanfang_hub::{BatchId, Layout, Millis, SessionId};

const UNIT_HEADER_ZH: &str = "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金";
const FAMILY_HEADER_ZH: &str = "家庭编号,姓名,排位,场次,可选户型";

/// A units CSV of `n` data rows; `bad(i)` may replace row i's line.
fn units_csv(n: usize, bad: impl Fn(usize) -> Option<String>) -> String {
    let mut s = String::from(UNIT_HEADER_ZH);
    s.push('\n');
    for i in 0..n {
        let line = bad(i).unwrap_or_else(|| {
            format!(
                "U{i:04},{}栋,{}{:02},{},两房一厅,{:.2},南,{}",
                i % 3 + 1,
                i / 10 + 2,
                i % 10 + 1,
                i / 10 + 2,
                55.0 + (i % 7) as f64,
                1800 + i % 5 * 10
            )
        });
        s.push_str(&line);
        s.push('\n');
    }
    s
}

fn families_csv(n: usize, bad: impl Fn(usize) -> Option<String>) -> String {
    let mut s = String::from(FAMILY_HEADER_ZH);
    s.push('\n');
    for i in 0..n {
        let line = bad(i).unwrap_or_else(|| {
            format!("F{i:04},张三丰,{},S{},一房一厅|两房一厅", i + 1, i / 50 + 1)
        });
        s.push_str(&line);
        s.push('\n');
    }
    s
}

fn only_error(r: Result<impl std::fmt::Debug, ImportErrors>) -> RowError {
    let errs = r.expect_err("import must fail").0;
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn thousand_unit_rows_with_one_bad_row_names_that_row_and_imports_nothing() {
    // Data row index 536 is spreadsheet row 538 (header is row 1, first data row 2).
    let csv = units_csv(1000, |i| {
        (i == 536).then(|| "U0536,2栋,5507,55,两房一厅,五十,南,1800".to_owned())
    });
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!(e.row, 538);
    assert_eq!(
        e.problem,
        Problem::BadNumber {
            field: "area",
            value: "五十".into()
        }
    );
    // The same file without the bad row imports every unit.
    let good = units_csv(1000, |_| None);
    assert_eq!(import::units_from_csv(good.as_bytes()).unwrap().len(), 1000);
}

#[test]
fn thousand_family_rows_with_one_bad_row_names_that_row_and_imports_nothing() {
    let csv = families_csv(1000, |i| {
        (i == 998).then(|| "F0998,王五,,S20,一房一厅".to_owned())
    });
    let e = only_error(import::families_from_csv(csv.as_bytes()));
    assert_eq!(e.row, 1000);
    assert_eq!(e.problem, Problem::MissingField("rank"));
}

#[test]
fn every_bad_row_is_reported_not_just_the_first() {
    let csv = units_csv(20, |i| match i {
        3 => Some("U0003,1栋,201,二,一房一厅,40,南,1200".into()),
        10 => Some("U0010,1栋,,3,一房一厅,40,南,1200".into()),
        15 => Some("U0015,1栋,305,3,一房一厅,40,南,-5".into()),
        _ => None,
    });
    let errs = import::units_from_csv(csv.as_bytes()).unwrap_err().0;
    let rows: Vec<usize> = errs.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![5, 12, 17]);
    assert_eq!(errs[1].problem, Problem::MissingField("number"));
    assert!(matches!(
        errs[2].problem,
        Problem::OutOfRange { field: "rent", .. }
    ));
}

#[test]
fn bom_and_chinese_headers_are_accepted() {
    let csv = "\u{feff}房源编号,楼栋,房号,楼层,户型,面积(㎡),朝向,租金（元/月）\n\
               1-1203,1栋,1203,12,一房一厅,45.5,东南,1365\n";
    let units = import::units_from_csv(csv.as_bytes()).unwrap();
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(u.id.as_str(), "1-1203");
    assert_eq!(u.building, "1栋");
    assert_eq!(u.number, "1203");
    assert_eq!(u.floor, 12);
    assert_eq!(u.layout, Layout::new("一房一厅"));
    assert_eq!(u.area, 45.5);
    assert_eq!(u.orientation, "东南");
    assert_eq!(u.rent, 1365.0);
}

#[test]
fn english_headers_in_any_order_are_accepted() {
    let csv = "rank,Name,id,eligible_layouts,session\n\
               2,李四,F2,两房一厅;三房一厅,S1\n\
               1,张三丰,F1,一房一厅，两房一厅,S1\n";
    let fams = import::families_from_csv(csv.as_bytes()).unwrap();
    assert_eq!(fams[0].id.as_str(), "F2");
    assert_eq!(fams[0].name, "李*");
    assert_eq!(fams[0].rank, 2);
    assert_eq!(
        fams[0].eligible_layouts,
        vec![Layout::new("两房一厅"), Layout::new("三房一厅")]
    );
    assert_eq!(fams[1].name, "张*丰");
    assert_eq!(fams[1].session, SessionId::new("S1"));
}

#[test]
fn eligible_layouts_split_on_every_separator() {
    let want: Vec<Layout> = ["一房一厅", "两房一厅", "三房一厅", "四房"]
        .into_iter()
        .map(Layout::new)
        .collect();
    assert_eq!(split_layouts("一房一厅|两房一厅、三房一厅;四房"), want);
    assert_eq!(split_layouts(" 一房一厅 ，两房一厅；三房一厅,四房 "), want);
    assert!(split_layouts(" | 、 ").is_empty());
}

#[test]
fn names_are_masked_unless_already_masked() {
    assert_eq!(mask_name("张三丰"), "张*丰");
    assert_eq!(mask_name("李四"), "李*");
    assert_eq!(mask_name("欧阳娜娜"), "欧**娜");
    assert_eq!(mask_name("王*明"), "王*明");
    assert_eq!(mask_name("王＊明"), "王＊明");
    assert_eq!(mask_name(" 赵 "), "赵*");
}

#[test]
fn duplicate_unit_id_names_both_rows() {
    let csv = units_csv(10, |i| {
        (i == 7).then(|| "U0002,1栋,999,9,一房一厅,40,南,1200".to_owned())
    });
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!(e.row, 9);
    assert_eq!(
        e.problem,
        Problem::DuplicateId {
            id: "U0002".into(),
            first_row: 4
        }
    );
}

#[test]
fn duplicate_family_id_and_duplicate_rank_are_refused() {
    let csv = families_csv(6, |i| match i {
        2 => Some("F0000,王五,99,S1,一房一厅".into()),
        4 => Some("F0404,赵六,2,S1,一房一厅".into()),
        _ => None,
    });
    let errs = import::families_from_csv(csv.as_bytes()).unwrap_err().0;
    assert_eq!(
        errs,
        vec![
            RowError {
                row: 4,
                problem: Problem::DuplicateId {
                    id: "F0000".into(),
                    first_row: 2
                }
            },
            RowError {
                row: 6,
                problem: Problem::DuplicateRank {
                    rank: 2,
                    first_row: 3
                }
            },
        ]
    );
}

#[test]
fn rank_zero_and_missing_layouts_are_refused() {
    let csv = families_csv(3, |i| match i {
        0 => Some("F0,王五,0,S1,一房一厅".into()),
        2 => Some("F2,王五,3,S1, | ".into()),
        _ => None,
    });
    let errs = import::families_from_csv(csv.as_bytes()).unwrap_err().0;
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].row, 2);
    assert!(matches!(
        errs[0].problem,
        Problem::OutOfRange { field: "rank", .. }
    ));
    assert_eq!(errs[1].row, 4);
    assert_eq!(errs[1].problem, Problem::MissingField("eligible_layouts"));
}

#[test]
fn missing_columns_are_reported_on_the_header_row() {
    let csv = "房源编号,楼栋,房号,楼层,户型,朝向\nU1,1栋,101,1,一房一厅,南\n";
    let errs = import::units_from_csv(csv.as_bytes()).unwrap_err().0;
    assert_eq!(
        errs,
        vec![
            RowError {
                row: 1,
                problem: Problem::MissingColumn("area")
            },
            RowError {
                row: 1,
                problem: Problem::MissingColumn("rent")
            },
        ]
    );
}

#[test]
fn session_column_may_be_left_out() {
    let csv = "家庭编号,姓名,排位,可选户型\nF1,张三,1,一房一厅\n";
    let fams = import::families_from_csv(csv.as_bytes()).unwrap();
    assert!(fams[0].session.as_str().is_empty());
}

#[test]
fn short_rows_report_the_missing_field() {
    let csv = format!("{UNIT_HEADER_ZH}\nU1,1栋,101,1\n");
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!((e.row, e.problem), (2, Problem::MissingField("layout")));
}

#[test]
fn blank_lines_count_as_rows_like_a_spreadsheet_shows_them() {
    let csv = format!(
        "{UNIT_HEADER_ZH}\nU1,1栋,101,1,一房一厅,40,南,1200\n\nU2,1栋,102,1,一房一厅,x,南,1200\n"
    );
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!(e.row, 4);
}

#[test]
fn gbk_csv_is_refused_with_a_hint() {
    // "房源编号" etc. in GBK are not UTF-8; the header row itself is rejected.
    let mut bytes = vec![0xB7, 0xBF, 0xD4, 0xB4, b','];
    bytes.extend_from_slice(b"x\nU1,y\n");
    let e = only_error(import::units_from_csv(&bytes));
    assert_eq!((e.row, e.problem), (1, Problem::NotUtf8));
}

#[test]
fn header_only_file_is_refused() {
    let e = only_error(import::units_from_csv(
        format!("{UNIT_HEADER_ZH}\n").as_bytes(),
    ));
    assert_eq!(e.problem, Problem::NoRows);
    let e = only_error(import::units_from_csv(b""));
    assert_eq!(e.problem, Problem::NoRows);
}

// ---------------------------------------------------------------------------
// XLSX

enum Cell<'a> {
    S(&'a str),
    N(f64),
}

fn xlsx(rows: &[Vec<Cell<'_>>]) -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            match cell {
                Cell::S(s) => ws.write_string(r as u32, c as u16, *s).map(|_| ()),
                Cell::N(n) => ws.write_number(r as u32, c as u16, *n).map(|_| ()),
            }
            .unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

fn header(h: &str) -> Vec<Cell<'_>> {
    h.split(',').map(Cell::S).collect()
}

#[test]
fn xlsx_units_with_numeric_cells_import() {
    use Cell::*;
    let bytes = xlsx(&[
        header(UNIT_HEADER_ZH),
        vec![
            S("2-0801"),
            S("2栋"),
            S("801"),
            N(8.0),
            S("三房一厅"),
            N(85.25),
            S("南"),
            N(2900.0),
        ],
        vec![
            S("2-0802"),
            S("2栋"),
            N(802.0),
            N(8.0),
            S("两房一厅"),
            N(62.0),
            S("北"),
            N(2100.5),
        ],
    ]);
    let units = import::units_from_xlsx(&bytes).unwrap();
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].floor, 8);
    assert_eq!(units[0].area, 85.25);
    // A number typed into the 房号 column reads as the text shown, without ".0".
    assert_eq!(units[1].number, "802");
    assert_eq!(units[1].rent, 2100.5);
}

#[test]
fn xlsx_families_import_and_names_are_masked() {
    use Cell::*;
    let bytes = xlsx(&[
        header(FAMILY_HEADER_ZH),
        vec![
            S("F1"),
            S("张三丰"),
            N(1.0),
            S("S1"),
            S("一房一厅、两房一厅"),
        ],
        vec![S("F2"), S("李*"), N(2.0), S("S1"), S("两房一厅")],
    ]);
    let fams = import::families_from_xlsx(&bytes).unwrap();
    assert_eq!(fams.len(), 2);
    assert_eq!(fams[0].name, "张*丰");
    assert_eq!(fams[0].eligible_layouts.len(), 2);
    assert_eq!(fams[1].rank, 2);
}

#[test]
fn xlsx_bad_rows_are_named_and_nothing_imports() {
    use Cell::*;
    let bytes = xlsx(&[
        header(FAMILY_HEADER_ZH),
        vec![S("F1"), S("张三"), N(1.0), S("S1"), S("一房一厅")],
        vec![S("F2"), S("李四"), N(2.5), S("S1"), S("一房一厅")],
        vec![S("F3"), S("王五"), N(3.0), S("S1"), S("一房一厅")],
        vec![S("F1"), S("赵六"), N(4.0), S("S1"), S("一房一厅")],
    ]);
    let errs = import::families_from_xlsx(&bytes).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].row, 3);
    assert_eq!(
        errs[0].problem,
        Problem::BadNumber {
            field: "rank",
            value: "2.5".into()
        }
    );
    assert_eq!(errs[1].row, 5);
    assert!(matches!(
        errs[1].problem,
        Problem::DuplicateId { first_row: 2, .. }
    ));
}

#[test]
fn xlsx_rows_count_from_a1_even_when_the_sheet_starts_lower() {
    use Cell::*;
    let mut rows = vec![vec![], vec![]];
    rows.push(header(UNIT_HEADER_ZH));
    rows.push(vec![
        S("U1"),
        S("1栋"),
        S("101"),
        S("一楼"),
        S("一房一厅"),
        N(40.0),
        S("南"),
        N(1200.0),
    ]);
    let e = only_error(import::units_from_xlsx(&xlsx(&rows)));
    assert_eq!(e.row, 4);
    assert!(matches!(
        e.problem,
        Problem::BadNumber { field: "floor", .. }
    ));
}

#[test]
fn garbage_is_not_an_xlsx() {
    let e = only_error(import::units_from_xlsx(b"PK\x03\x04 not really a zip"));
    assert_eq!(e.row, 0);
    assert!(matches!(e.problem, Problem::Unreadable(_)));
}

#[test]
fn xlsx_header_problems_name_the_row_the_header_is_on() {
    let rows = vec![vec![], vec![], header("房源编号,楼栋")];
    let errs = import::units_from_xlsx(&xlsx(&rows)).unwrap_err().0;
    assert!(errs.iter().all(|e| e.row == 3), "{errs:?}");
}

// ---------------------------------------------------------------------------
// Hostile XLSX files (made by tests/fixtures/make_fixtures.py)

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn xlsx_with_a_value_in_the_last_cell_is_refused_without_allocating_the_grid() {
    // 2 KB; calamine's dense range for it would be 16384 × 1048576 cells (512 GiB).
    let bytes = fixture("last_cell.xlsx");
    assert!(bytes.len() < 4096);
    let e = only_error(import::units_from_xlsx(&bytes));
    assert_eq!(
        (e.row, e.problem),
        (
            0,
            Problem::TooManyRows {
                row: 1_048_576,
                max: MAX_ROWS
            }
        )
    );
}

#[test]
fn xlsx_with_a_value_past_the_last_column_read_is_refused() {
    let e = only_error(import::units_from_xlsx(&fixture("far_column.xlsx")));
    assert_eq!(
        (e.row, e.problem),
        (
            0,
            Problem::TooManyColumns {
                column: 16_384,
                max: MAX_COLUMNS
            }
        )
    );
}

#[test]
fn xlsx_declared_dimension_and_empty_styled_cells_are_not_data() {
    // <dimension ref="A1:XFD1048576"/> and <c r="XFD1048576" s="0"/> around one good row.
    let units = import::units_from_xlsx(&fixture("huge_dimension.xlsx")).unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].id.as_str(), "U1");
}

#[test]
fn xlsx_long_shared_string_used_400_times_is_never_copied_and_the_answer_stays_small() {
    // One 1 MiB shared string as the 房源编号 of 400 rows.
    let e = import::units_from_xlsx(&fixture("shared_string_bomb.xlsx")).unwrap_err();
    assert_eq!(e.count(), 400);
    assert_eq!(e.0.len(), MAX_PROBLEMS + 1);
    for (i, r) in e.0[..MAX_PROBLEMS].iter().enumerate() {
        assert_eq!(r.row, i + 2);
        assert_eq!(
            r.problem,
            Problem::TooLong {
                field: "id",
                max: MAX_CELL_CHARS
            }
        );
    }
    assert_eq!(e.0[MAX_PROBLEMS].problem, Problem::MoreProblems(300));
    let listed: usize = e.0.iter().map(|r| r.to_string().len()).sum();
    assert!(listed < 8 * 1024, "{listed} bytes of problems");
    assert!(e.to_string().len() < 1024, "{e}");
}

#[test]
fn xlsx_shared_string_index_past_the_table_is_unreadable_not_a_panic() {
    let e = only_error(import::units_from_xlsx(&fixture(
        "bad_shared_string_index.xlsx",
    )));
    assert_eq!(e.row, 0);
    assert!(matches!(e.problem, Problem::Unreadable(_)), "{e}");
}

#[test]
fn xlsx_shared_string_table_over_16_mib_is_refused_before_it_is_read() {
    let bytes = fixture("big_shared_strings.xlsx");
    assert!(bytes.len() < 32 * 1024);
    let e = only_error(import::units_from_xlsx(&bytes));
    assert_eq!(
        e.problem,
        Problem::TooBig {
            part: "the shared-string table",
            max_mib: 16
        }
    );
}

#[test]
fn xlsx_that_unpacks_to_over_64_mib_is_refused() {
    let bytes = fixture("zip_bomb.xlsx");
    assert!(bytes.len() < 128 * 1024);
    let e = only_error(import::units_from_xlsx(&bytes));
    assert_eq!(
        e.problem,
        Problem::TooBig {
            part: "the file",
            max_mib: 64
        }
    );
}

#[test]
fn xlsx_cell_longer_than_1000_characters_is_a_problem_of_its_row() {
    use Cell::*;
    let long = "栋".repeat(MAX_CELL_CHARS + 1);
    let bytes = xlsx(&[
        header(UNIT_HEADER_ZH),
        vec![
            S("U1"),
            S(&long),
            S("101"),
            N(1.0),
            S("一房一厅"),
            N(40.0),
            S("南"),
            N(1200.0),
        ],
    ]);
    let e = only_error(import::units_from_xlsx(&bytes));
    assert_eq!(
        (e.row, e.problem),
        (
            2,
            Problem::TooLong {
                field: "building",
                max: MAX_CELL_CHARS
            }
        )
    );
}

// ---------------------------------------------------------------------------
// Limits on rows, columns, cells, fields and answers

#[test]
fn csv_cell_longer_than_1000_characters_is_a_problem_of_its_row() {
    let long = "x".repeat(MAX_CELL_CHARS + 1);
    let csv = units_csv(3, |i| {
        (i == 1).then(|| format!("U1,1栋,101,1,{long},40,南,1200"))
    });
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!(
        (e.row, e.problem),
        (
            3,
            Problem::TooLong {
                field: "layout",
                max: MAX_CELL_CHARS
            }
        )
    );
}

#[test]
fn csv_data_past_the_last_column_read_is_refused_but_blank_trailing_cells_are_not() {
    let mut line = "U1,1栋,101,1,一房一厅,40,南,1200".to_owned();
    line.push_str(&",".repeat(MAX_COLUMNS));
    let ok = units_csv(2, |i| (i == 0).then(|| line.clone()));
    assert_eq!(import::units_from_csv(ok.as_bytes()).unwrap().len(), 2);
    let bad = units_csv(2, |i| (i == 0).then(|| format!("{line}备注")));
    let e = only_error(import::units_from_csv(bad.as_bytes()));
    assert_eq!(
        (e.row, e.problem),
        (
            0,
            Problem::TooManyColumns {
                column: MAX_COLUMNS + 8,
                max: MAX_COLUMNS
            }
        )
    );
}

#[test]
fn csv_data_past_the_last_row_read_is_refused() {
    // Blank lines count as rows, as a spreadsheet shows them.
    let csv = format!(
        "{UNIT_HEADER_ZH}\nU1,1栋,101,1,一房一厅,40,南,1200\n{}U2,1栋,102,1,一房一厅,40,南,1200\n",
        "\n".repeat(MAX_ROWS - 2)
    );
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    assert_eq!(
        e.problem,
        Problem::TooManyRows {
            row: MAX_ROWS + 1,
            max: MAX_ROWS
        }
    );
}

#[test]
fn problems_are_listed_up_to_100_and_the_rest_counted() {
    let csv = units_csv(250, |i| Some(format!("U{i},1栋,101,x,一房一厅,40,南,1200")));
    let e = import::units_from_csv(csv.as_bytes()).unwrap_err();
    assert_eq!(e.count(), 250);
    assert_eq!(e.0.len(), MAX_PROBLEMS + 1);
    assert_eq!(e.0[MAX_PROBLEMS - 1].row, MAX_PROBLEMS + 1);
    assert_eq!(
        e.0[MAX_PROBLEMS],
        RowError {
            row: 0,
            problem: Problem::MoreProblems(150)
        }
    );
    let msg = e.to_string();
    assert!(msg.starts_with("250 bad row(s): row 2: "), "{msg}");
}

#[test]
fn values_quoted_in_problems_are_cut_to_64_characters() {
    let floor = "9".repeat(500);
    let csv = units_csv(1, |_| {
        Some(format!("U1,1栋,101,{floor},一房一厅,40,南,1200"))
    });
    let e = only_error(import::units_from_csv(csv.as_bytes()));
    let Problem::BadNumber { field, value } = e.problem else {
        panic!("{e}");
    };
    assert_eq!(field, "floor");
    assert_eq!(value, format!("{}…", &floor[..MAX_ECHO_CHARS]));
}

#[test]
fn unit_text_fields_over_64_characters_are_refused_per_row() {
    let ok = "栋".repeat(MAX_TEXT_CHARS);
    let long = "栋".repeat(MAX_TEXT_CHARS + 1);
    let long_id = "U".repeat(MAX_ID_CHARS + 1);
    let csv = units_csv(7, |i| match i {
        0 => Some(format!(
            "{},{ok},{ok},1,{ok},40,{ok},1200",
            "U".repeat(MAX_ID_CHARS)
        )),
        1 => Some(format!("{long_id},1栋,101,1,一房一厅,40,南,1200")),
        2 => Some(format!("U2,{long},101,1,一房一厅,40,南,1200")),
        3 => Some(format!("U3,1栋,{long},1,一房一厅,40,南,1200")),
        4 => Some(format!("U4,1栋,101,1,{long},40,南,1200")),
        5 => Some(format!("U5,1栋,101,1,一房一厅,40,{long},1200")),
        _ => None,
    });
    let errs = import::units_from_csv(csv.as_bytes()).unwrap_err().0;
    let got: Vec<(usize, Problem)> = errs.into_iter().map(|e| (e.row, e.problem)).collect();
    let long = |field| Problem::TooLong {
        field,
        max: MAX_TEXT_CHARS,
    };
    assert_eq!(
        got,
        vec![
            (
                3,
                Problem::TooLong {
                    field: "id",
                    max: MAX_ID_CHARS
                }
            ),
            (4, long("building")),
            (5, long("number")),
            (6, long("layout")),
            (7, long("orientation")),
        ]
    );
}

#[test]
fn family_text_fields_over_64_characters_are_refused_per_row() {
    let long = "张".repeat(MAX_TEXT_CHARS + 1);
    let csv = families_csv(5, |i| match i {
        0 => Some(format!(
            "{},张三,1,S1,一房一厅",
            "F".repeat(MAX_ID_CHARS + 1)
        )),
        1 => Some(format!("F1,{long},2,S1,一房一厅")),
        2 => Some(format!(
            "F2,张三,3,{},一房一厅",
            "S".repeat(MAX_ID_CHARS + 1)
        )),
        3 => Some(format!("F3,张三,4,S1,一房一厅|{long}")),
        _ => None,
    });
    let errs = import::families_from_csv(csv.as_bytes()).unwrap_err().0;
    let got: Vec<(usize, Problem)> = errs.into_iter().map(|e| (e.row, e.problem)).collect();
    let long = |field, max| Problem::TooLong { field, max };
    assert_eq!(
        got,
        vec![
            (2, long("id", MAX_ID_CHARS)),
            (3, long("name", MAX_TEXT_CHARS)),
            (4, long("session", MAX_ID_CHARS)),
            (5, long("eligible_layouts", MAX_TEXT_CHARS)),
        ]
    );
}

#[test]
fn control_characters_in_text_fields_are_refused_per_row() {
    let csv = units_csv(3, |i| match i {
        0 => Some("U\u{1}0,1栋,101,1,一房一厅,40,南,1200".into()),
        1 => Some("U1,\"1\n栋\",101,1,一房一厅,40,南,1200".into()),
        _ => None,
    });
    let errs = import::units_from_csv(csv.as_bytes()).unwrap_err().0;
    let got: Vec<(usize, Problem)> = errs.into_iter().map(|e| (e.row, e.problem)).collect();
    assert_eq!(
        got,
        vec![
            (2, Problem::ControlCharacter { field: "id" }),
            (3, Problem::ControlCharacter { field: "building" }),
        ]
    );
    let csv = families_csv(2, |i| (i == 1).then(|| "F1,张\t三,2,S1,一房一厅".into()));
    let e = only_error(import::families_from_csv(csv.as_bytes()));
    assert_eq!(
        (e.row, e.problem),
        (3, Problem::ControlCharacter { field: "name" })
    );
}

#[test]
fn unit_numbers_out_of_range_are_refused_per_row_and_the_bounds_accepted() {
    let unit = |floor: &str, area: &str, rent: &str| {
        format!("U,1栋,101,{floor},一房一厅,{area},南,{rent}")
    };
    let rows = [
        unit("-99", "0.01", "0"),
        unit("999", "10000", "1000000"),
        unit("1000", "40", "1200"),
        unit("-100", "40", "1200"),
        unit("99999999999", "40", "1200"),
        unit("1", "0", "1200"),
        unit("1", "10000.5", "1200"),
        unit("1", "1e300", "1200"),
        unit("1", "40", "1000000.01"),
    ];
    let csv = units_csv(rows.len(), |i| {
        Some(rows[i].replacen("U,", &format!("U{i},"), 1))
    });
    let errs = import::units_from_csv(csv.as_bytes()).unwrap_err().0;
    let got: Vec<(usize, &str, &str)> = errs
        .iter()
        .map(|e| match &e.problem {
            Problem::OutOfRange { field, value, .. } => (e.row, *field, value.as_str()),
            p => panic!("row {}: {p}", e.row),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (4, "floor", "1000"),
            (5, "floor", "-100"),
            (6, "floor", "99999999999"),
            (7, "area", "0"),
            (8, "area", "10000.5"),
            (9, "area", "1e300"),
            (10, "rent", "1000000.01"),
        ]
    );
    assert_eq!(
        errs[0].problem.to_string(),
        "floor: 1000 is out of range (allowed: -99 to 999)"
    );
}

#[test]
fn ranks_out_of_range_are_refused_per_row_and_the_bounds_accepted() {
    let csv = families_csv(4, |i| match i {
        0 => Some("F0,张三,1,S1,一房一厅".into()),
        1 => Some("F1,张三,10000000,S1,一房一厅".into()),
        2 => Some("F2,张三,10000001,S1,一房一厅".into()),
        3 => Some("F3,张三,4294967296,S1,一房一厅".into()),
        _ => None,
    });
    let errs = import::families_from_csv(csv.as_bytes()).unwrap_err().0;
    let rows: Vec<usize> = errs.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![4, 5]);
    assert!(errs
        .iter()
        .all(|e| matches!(e.problem, Problem::OutOfRange { field: "rank", .. })));
}

// ---------------------------------------------------------------------------
// Batch assembly

fn meta() -> BatchMeta {
    BatchMeta {
        id: BatchId::new("b1"),
        name: "测试批次".into(),
        preselect_start: Millis(1_000),
        preselect_end: None,
        utc_offset_minutes: 480,
    }
}

#[test]
fn auto_plan_cuts_families_by_rank_into_timed_sessions_that_validate() {
    let units = import::units_from_csv(units_csv(30, |_| None).as_bytes()).unwrap();
    // Shuffled ranks: the plan must order by rank, not by row.
    let csv = families_csv(0, |_| None)
        + "F3,甲乙丙,3,,一房一厅\nF1,甲乙,1,,一房一厅\nF5,甲,5,,一房一厅\nF2,乙,2,,一房一厅\nF4,丙,4,,一房一厅\n";
    let fams = import::families_from_csv(csv.as_bytes()).unwrap();
    let plan = SessionPlan::Auto {
        per_session: 2,
        first_start: Millis(100_000),
        interval_ms: 300_000,
        window_ms: 180_000,
    };
    let batch = build_batch(meta(), units, fams, &plan).unwrap();
    batch.validate().unwrap();
    let ids: Vec<Vec<&str>> = batch
        .sessions
        .iter()
        .map(|s| s.families.iter().map(|f| f.as_str()).collect())
        .collect();
    assert_eq!(ids, vec![vec!["F1", "F2"], vec!["F3", "F4"], vec!["F5"]]);
    let starts: Vec<i64> = batch.sessions.iter().map(|s| s.start.0).collect();
    assert_eq!(starts, vec![100_000, 400_000, 700_000]);
    assert!(batch.sessions.iter().all(|s| s.window_ms == 180_000));
    assert_eq!(batch.family(&"F5".into()).unwrap().session.as_str(), "S03");
}

fn named(slots: &[(&str, i64)]) -> SessionPlan {
    SessionPlan::Named(
        slots
            .iter()
            .map(|(id, start)| {
                (
                    SessionId::new(*id),
                    SessionSlot {
                        start: Millis(*start),
                        window_ms: 180_000,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

#[test]
fn named_plan_groups_families_by_their_session_column() {
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = import::families_from_csv(families_csv(120, |_| None).as_bytes()).unwrap();
    let plan = named(&[("S1", 100_000), ("S2", 400_000), ("S3", 700_000)]);
    let batch = build_batch(meta(), units, fams, &plan).unwrap();
    batch.validate().unwrap();
    let sizes: Vec<usize> = batch.sessions.iter().map(|s| s.families.len()).collect();
    assert_eq!(sizes, vec![50, 50, 20]);
}

#[test]
fn named_plan_refuses_unscheduled_and_empty_sessions() {
    let units = || import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = || import::families_from_csv(families_csv(60, |_| None).as_bytes()).unwrap();
    let e = build_batch(meta(), units(), fams(), &named(&[("S1", 0)])).unwrap_err();
    assert!(matches!(e, BuildError::UnscheduledSession(_, ref s) if s.as_str() == "S2"));
    let e = build_batch(
        meta(),
        units(),
        fams(),
        &named(&[("S1", 0), ("S2", 1), ("S9", 2)]),
    )
    .unwrap_err();
    assert_eq!(e, BuildError::EmptySession(SessionId::new("S9")));
}

#[test]
fn named_plan_refuses_a_later_session_with_better_ranks() {
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = import::families_from_csv(families_csv(60, |_| None).as_bytes()).unwrap();
    // S2 (ranks 51..60) runs before S1 (ranks 1..50).
    let e = build_batch(meta(), units, fams, &named(&[("S1", 900_000), ("S2", 0)])).unwrap_err();
    assert!(matches!(e, BuildError::RanksOutOfOrder { .. }), "{e:?}");
}

#[test]
fn named_plan_refuses_a_family_without_session() {
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams =
        import::families_from_csv("id,name,rank,eligible_layouts\nF1,张三,1,一房一厅\n".as_bytes())
            .unwrap();
    let e = build_batch(meta(), units, fams, &named(&[("S1", 0)])).unwrap_err();
    assert_eq!(e, BuildError::NoSession("F1".into()));
}

#[test]
fn duplicate_ids_across_files_fail_batch_validation() {
    // Each file is fine alone; a batch still refuses what validation refuses.
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let plan = SessionPlan::Auto {
        per_session: 0,
        first_start: Millis(0),
        interval_ms: 1,
        window_ms: 1,
    };
    let fams = import::families_from_csv(families_csv(3, |_| None).as_bytes()).unwrap();
    assert_eq!(
        build_batch(meta(), units, fams, &plan).unwrap_err(),
        BuildError::BadPlan
    );
}

#[test]
fn import_error_message_lists_rows() {
    let csv = units_csv(3, |i| {
        (i == 1).then(|| "U1,1栋,101,x,一房一厅,40,南,1200".into())
    });
    let msg = import::units_from_csv(csv.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("row 3"), "{msg}");
    assert!(msg.contains("floor"), "{msg}");
}

#[test]
fn auto_plan_whose_session_times_overflow_is_refused_not_wrapped() {
    let units = || import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = || import::families_from_csv(families_csv(3, |_| None).as_bytes()).unwrap();
    let plan = |first_start, interval_ms| SessionPlan::Auto {
        per_session: 1,
        first_start: Millis(first_start),
        interval_ms,
        window_ms: 180_000,
    };
    let e = build_batch(meta(), units(), fams(), &plan(0, i64::MAX / 2 + 1)).unwrap_err();
    assert_eq!(e, BuildError::TimeOutOfRange(SessionId::new("S03")));
    let e = build_batch(meta(), units(), fams(), &plan(i64::MAX - 1_000, 0)).unwrap_err();
    assert_eq!(e, BuildError::TimeOutOfRange(SessionId::new("S01")));
}

#[test]
fn auto_plan_with_a_negative_interval_is_refused() {
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = import::families_from_csv(families_csv(3, |_| None).as_bytes()).unwrap();
    let plan = SessionPlan::Auto {
        per_session: 1,
        first_start: Millis(1_000_000),
        interval_ms: -300_000,
        window_ms: 180_000,
    };
    assert_eq!(
        build_batch(meta(), units, fams, &plan).unwrap_err(),
        BuildError::BadPlan
    );
}

#[test]
fn named_plan_whose_window_end_overflows_is_refused() {
    let units = import::units_from_csv(units_csv(5, |_| None).as_bytes()).unwrap();
    let fams = import::families_from_csv(families_csv(3, |_| None).as_bytes()).unwrap();
    let e = build_batch(meta(), units, fams, &named(&[("S1", i64::MAX - 1)])).unwrap_err();
    assert_eq!(e, BuildError::TimeOutOfRange(SessionId::new("S1")));
}

#[test]
fn millis_plus_ms_saturates_instead_of_wrapping() {
    assert_eq!(Millis(i64::MAX - 5).plus_ms(10), Millis(i64::MAX));
    assert_eq!(Millis(i64::MIN + 5).plus_ms(-10), Millis(i64::MIN));
    assert_eq!(Millis(1_000).plus_ms(-400), Millis(600));
}

// ---------------------------------------------------------------------------
// Templates and the documentation of the sheets, made from the importer's columns.

use xuanfang_hub::import::templates::{self, Sheet};
use xuanfang_hub::import::{Column, Format, FAMILY_COLUMNS, UNIT_COLUMNS};

#[test]
fn unit_template_imports_unchanged_as_its_two_example_units() {
    let csv = Sheet::Units.csv();
    assert!(csv.starts_with("\u{feff}".as_bytes()), "BOM for Excel");
    let text = std::str::from_utf8(&csv[3..]).unwrap();
    assert_eq!(text.lines().next(), Some(UNIT_HEADER_ZH));
    let units = import::units(Format::Csv, &csv).unwrap();
    let cells: Vec<_> = units
        .iter()
        .map(|u| {
            (
                u.id.as_str(),
                u.building.as_str(),
                u.number.as_str(),
                u.floor,
                u.layout.as_str(),
                u.area,
                u.orientation.as_str(),
                u.rent,
            )
        })
        .collect();
    assert_eq!(
        cells,
        [
            ("1-101", "1栋", "101", 1, "一房一厅", 45.5, "南", 1200.0),
            ("1-102", "1栋", "102", 1, "两房一厅", 62.8, "南北", 1650.0),
        ]
    );
}

#[test]
fn family_template_imports_unchanged_with_several_layouts_in_one_cell_and_no_session() {
    let csv = Sheet::Families.csv();
    let text = std::str::from_utf8(&csv[3..]).unwrap();
    let header = format!("{FAMILY_HEADER_ZH},申请人全名,身份证号");
    assert_eq!(text.lines().next(), Some(header.as_str()));
    let fams = import::families(Format::Csv, &csv).unwrap();
    assert_eq!(fams.len(), 2);
    assert_eq!(
        (fams[0].id.as_str(), fams[0].name.as_str(), fams[0].rank),
        ("F001", "张*丰", 1)
    );
    assert_eq!(
        fams[0].eligible_layouts,
        [Layout::new("一房一厅"), Layout::new("两房一厅")]
    );
    assert_eq!(
        (fams[1].id.as_str(), fams[1].name.as_str(), fams[1].rank),
        ("F002", "李*", 2)
    );
    assert_eq!(fams[1].eligible_layouts, [Layout::new("两房一厅")]);
    assert!(fams.iter().all(|f| f.session.as_str().is_empty()));
}

#[test]
fn template_examples_make_a_batch_under_the_consoles_automatic_plan() {
    let units = import::units(Format::Csv, &Sheet::Units.csv()).unwrap();
    let fams = import::families(Format::Csv, &Sheet::Families.csv()).unwrap();
    let plan = SessionPlan::Auto {
        per_session: 50,
        first_start: Millis(1_000_000),
        interval_ms: 300_000,
        window_ms: 180_000,
    };
    let batch = build_batch(meta(), units, fams, &plan).unwrap();
    assert_eq!(batch.sessions.len(), 1);
    // Every layout a family may choose is one the units sheet has.
    for f in &batch.families {
        for l in &f.eligible_layouts {
            assert!(batch.units.iter().any(|u| &u.layout == l), "{l}");
        }
    }
}

#[test]
fn templates_use_the_chinese_header_and_the_english_name_is_accepted_too() {
    for sheet in Sheet::ALL {
        for c in sheet.columns() {
            assert!(
                c.zh().chars().all(|ch| !ch.is_ascii()),
                "{}: {} is the Chinese header",
                c.name,
                c.zh()
            );
            assert!(c.aliases.contains(&c.name), "{} is accepted", c.name);
        }
        // The template with English headers imports the same rows.
        let english: Vec<&str> = sheet.columns().iter().map(|c| c.name).collect();
        let mut csv = english.join(",");
        for row in sheet.examples() {
            csv.push('\n');
            csv.push_str(&row.join(","));
        }
        let zh = Sheet::csv(sheet);
        match sheet {
            Sheet::Units => assert_eq!(
                import::units(Format::Csv, csv.as_bytes()).unwrap(),
                import::units(Format::Csv, &zh).unwrap()
            ),
            Sheet::Families => assert_eq!(
                import::families(Format::Csv, csv.as_bytes()).unwrap(),
                import::families(Format::Csv, &zh).unwrap()
            ),
        }
    }
}

#[test]
fn only_the_session_and_identity_columns_are_optional() {
    let optional: Vec<&str> = UNIT_COLUMNS
        .iter()
        .chain(FAMILY_COLUMNS)
        .filter(|c| !c.required)
        .map(|c| c.zh())
        .collect();
    assert_eq!(optional, ["场次", "申请人全名", "身份证号"]);
}

// The tables of docs/operations.md, between these markers, are generated here. After
// changing a column, regenerate with:
//
//   UPDATE_OPERATIONS_DOC=1 cargo test -p xuanfang-hub --test import

const DOC_BEGIN: &str = "<!-- BEGIN GENERATED UPLOAD SHEETS -->";
const DOC_END: &str = "<!-- END GENERATED UPLOAD SHEETS -->";

/// A markdown table cell: `|` escaped, line breaks as spaces.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn doc_row(c: &Column) -> String {
    let others: Vec<String> = c
        .aliases
        .iter()
        .filter(|a| **a != c.zh() && **a != c.name)
        .map(|a| format!("`{a}`"))
        .collect();
    let mut notes = c.note.1.to_owned();
    if !others.is_empty() {
        if !notes.is_empty() {
            notes.push(' ');
        }
        notes.push_str(&format!("Also accepted: {}.", others.join(", ")));
    }
    let example = match templates::example(c).as_str() {
        "（空）(empty)" => "(empty)".to_owned(),
        e => e.to_owned(),
    };
    format!(
        "| {} | `{}` | {} | {} | {} | {} |",
        c.zh(),
        c.name,
        md(&templates::describe(c.kind).1),
        if c.required { "yes" } else { "no" },
        md(&example),
        md(&notes)
    )
}

fn sheets_doc() -> String {
    let mut out = String::from("\n");
    for sheet in Sheet::ALL {
        let (zh, en) = sheet.title();
        let n = sheet.name();
        out.push_str(&format!(
            "### {zh} {en} (`{n}.csv`, `{n}.xlsx`)\n\n\
             | 中文列名 | English | type | required | example | notes |\n\
             |---|---|---|---|---|---|\n"
        ));
        for c in sheet.columns() {
            out.push_str(&doc_row(c));
            out.push('\n');
        }
        out.push('\n');
    }
    for (_, en) in templates::general_notes() {
        out.push_str(&format!("- {en}\n"));
    }
    out.push('\n');
    out
}

#[test]
fn operations_doc_lists_the_columns_the_importer_reads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(b), Some(e)) = (doc.find(DOC_BEGIN), doc.find(DOC_END)) else {
        panic!(
            "{} lacks the markers {DOC_BEGIN} / {DOC_END}",
            path.display()
        );
    };
    assert!(b < e, "markers out of order");
    let want = sheets_doc();
    if doc[b + DOC_BEGIN.len()..e] == want {
        return;
    }
    if std::env::var_os("UPDATE_OPERATIONS_DOC").is_some_and(|v| v == "1") {
        let updated = format!("{}{DOC_BEGIN}{want}{}", &doc[..b], &doc[e..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "docs/operations.md is out of date with the import columns; regenerate with\n  \
         UPDATE_OPERATIONS_DOC=1 cargo test -p xuanfang-hub --test import"
    );
}

#[test]
fn every_problem_has_a_code_and_a_chinese_message_naming_chinese_columns() {
    let units = units_csv(3, |i| {
        (i == 1).then(|| "U1,1栋,101,一楼,两房一厅,55,南,1800".into())
    });
    let e = only_error(import::units_from_csv(units.as_bytes()));
    assert_eq!(e.row, 3, "spreadsheet row numbers are kept");
    assert_eq!(e.problem.code(), "bad_number");
    assert_eq!(e.zh(), "第 3 行：楼层“一楼”不是有效的数字");
    // The English text stays for the English console.
    assert_eq!(
        e.to_string(),
        "row 3: floor: \"一楼\" is not a valid number"
    );

    let families = "家庭编号,姓名,场次,可选户型\nF1,张三,,两房一厅\n";
    let e = only_error(import::families_from_csv(families.as_bytes()));
    assert_eq!(e.problem.code(), "missing_column");
    assert_eq!(e.zh(), "第 1 行：缺少列“排位”");
    assert_eq!(e.to_string(), "row 1: missing column rank");

    let range = Problem::OutOfRange {
        field: "area",
        value: "0".into(),
        allowed: "above 0, up to 10000".into(),
    };
    assert_eq!(range.zh(), "面积“0”超出范围（允许：大于 0，至多 10000）");
    // No Chinese message leaks an internal English field name.
    for p in [
        Problem::MissingField("eligible_layouts"),
        Problem::TooLong {
            field: "building",
            max: 64,
        },
        Problem::ControlCharacter { field: "name" },
        Problem::DuplicateColumn("orientation"),
    ] {
        let zh = p.zh();
        assert!(!zh.chars().any(|c| c.is_ascii_alphabetic()), "{zh}");
    }
}

#[test]
fn a_family_whose_layouts_no_unit_has_is_refused_on_its_row() {
    let units = import::units_from_csv(units_csv(4, |_| None).as_bytes()).unwrap();
    let families = "家庭编号,姓名,排位,场次,可选户型\n\
                    F1,张三,1,,两房一厅\n\
                    F2,李四,2,,二房一厅\n\
                    F3,王五,3,,一房一厅、两房一厅\n";
    let rows = import::families_with_rows(import::Format::Csv, families.as_bytes()).unwrap();
    assert_eq!(rows.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [2, 3, 4]);
    let e = import::check_layouts(&units, &rows).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e:?}");
    assert_eq!(
        e.0[0].row, 3,
        "F2's row: 二房一厅 is spelled unlike any unit's"
    );
    assert_eq!(e.0[0].problem.code(), "no_unit_of_layouts");
    assert!(e.0[0].zh().contains("二房一厅"), "{}", e.0[0].zh());
    // A family with at least one offered layout is fine.
    import::check_layouts(&units, &rows[..1]).unwrap();
    import::check_layouts(&units, &rows[2..]).unwrap();
}
