//! The family sheet's optional identity columns (申请人全名, 身份证号): read from CSV and
//! XLSX under Chinese or English headers, the number checked per GB 11643 with a clear
//! error on its row, never kept in the family (the batch shows only the masked name).

use rust_xlsxwriter::Workbook;
use xuanfang_hub::import::{self, Format, ImportErrors, Problem};
use xuanfang_hub::signing::{IdNumber, IdNumberError};

/// An identity number with its check character computed (birth date 1949-12-31, the
/// standard's example region): `seq` in 000..=999.
fn id_number(seq: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("11010519491231{seq:03}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

fn problems(r: Result<impl std::fmt::Debug, ImportErrors>) -> Vec<(usize, Problem)> {
    r.expect_err("import must fail")
        .0
        .into_iter()
        .map(|e| (e.row, e.problem))
        .collect()
}

#[test]
fn chinese_headers_csv_carry_full_name_and_number_apart_from_the_family() {
    let (a, b) = (id_number(1), id_number(2));
    let csv = format!(
        "家庭编号,姓名,排位,可选户型,申请人全名,身份证号\n\
         F1,张三丰,1,一房一厅,张三丰,{a}\n\
         F2,李*,2,一房一厅,李四,{}\n\
         F3,王五,3,一房一厅,,\n\
         F4,赵六,4,一房一厅,赵小六,\n",
        b.to_lowercase()
    );
    let rows = import::families_with_identities(Format::Csv, csv.as_bytes()).unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|(row, f, i)| {
            (
                *row,
                f.name.as_str(),
                i.as_ref().and_then(|i| i.full_name.clone()),
                i.as_ref()
                    .and_then(|i| i.id_number.as_ref())
                    .map(|n| n.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, "张*丰", Some("张三丰".into()), Some(a.clone())),
            // A final x is read as X.
            (3, "李*", Some("李四".into()), Some(b.clone())),
            (4, "王*", None, None),
            (5, "赵*", Some("赵小六".into()), None),
        ]
    );
    // The families alone (what the batch keeps) hold only the masked names.
    let fams = import::families(Format::Csv, csv.as_bytes()).unwrap();
    let json = serde_json::to_string(&fams).unwrap();
    assert!(
        !json.contains(&a) && !json.contains("张三丰") && !json.contains("李四"),
        "{json}"
    );
}

#[test]
fn english_headers_and_a_sheet_without_the_columns() {
    let a = id_number(7);
    let csv =
        format!("id,name,rank,eligible_layouts,full_name,id_number\nF1,Zhang,1,A,Zhang San,{a}\n");
    let rows = import::families_with_identities(Format::Csv, csv.as_bytes()).unwrap();
    let i = rows[0].2.as_ref().unwrap();
    assert_eq!(i.full_name.as_deref(), Some("Zhang San"));
    assert_eq!(i.id_number.as_ref().map(IdNumber::as_str), Some(a.as_str()));
    // Other spellings of the headers.
    let csv = format!("家庭编号,姓名,排位,可选户型,全名,身份证号码\nF1,张三,1,A,张三,{a}\n");
    let rows = import::families_with_identities(Format::Csv, csv.as_bytes()).unwrap();
    assert!(rows[0].2.is_some());
    // The columns are optional.
    let rows = import::families_with_identities(
        Format::Csv,
        "家庭编号,姓名,排位,可选户型\nF1,张三,1,A\n".as_bytes(),
    )
    .unwrap();
    assert!(rows[0].2.is_none());
}

#[test]
fn each_bad_number_is_named_on_its_row_in_both_languages_and_nothing_is_imported() {
    let good = id_number(3);
    let mut wrong_check = good.clone();
    let last = wrong_check.pop().unwrap();
    wrong_check.push(if last == '0' { '1' } else { '0' });
    let csv = format!(
        "家庭编号,姓名,排位,可选户型,申请人全名,身份证号\n\
         F1,张三,1,A,张三,{good}\n\
         F2,李四,2,A,李四,{wrong_check}\n\
         F3,王五,3,A,王五,11010519491231\n\
         F4,赵六,4,A,赵六,110105194902300028\n\
         F5,钱七,5,A,钱七,11010519491231003Y\n\
         F6,孙八,6,A,,{}\n\
         F7,周九,7,A,周九,{good}\n",
        id_number(4)
    );
    let got = problems(import::families_with_identities(
        Format::Csv,
        csv.as_bytes(),
    ));
    assert_eq!(
        got,
        [
            (3, Problem::BadIdNumber(IdNumberError::Checksum)),
            (4, Problem::BadIdNumber(IdNumberError::Length(14))),
            (5, Problem::BadIdNumber(IdNumberError::BadDate)),
            (6, Problem::BadIdNumber(IdNumberError::NotDigits)),
            (7, Problem::IdNumberWithoutName),
            (
                8,
                Problem::DuplicateIdNumber {
                    masked: format!("110105********{}", &good[14..]),
                    first_row: 2
                }
            ),
        ]
    );
    let errs = import::families(Format::Csv, csv.as_bytes()).unwrap_err().0;
    let codes: Vec<&str> = errs.iter().map(|e| e.problem.code()).collect();
    assert_eq!(
        codes,
        [
            "bad_id_number",
            "bad_id_number",
            "bad_id_number",
            "bad_id_number",
            "id_number_without_name",
            "duplicate_id_number"
        ]
    );
    assert_eq!(errs[0].zh(), "第 3 行：身份证号校验位不符（GB 11643）");
    assert_eq!(
        errs[0].to_string(),
        "row 3: id_number: the check character does not match (GB 11643)"
    );
    // No message quotes a whole number (answers and logs carry them).
    for e in &errs {
        for text in [e.zh(), e.to_string()] {
            assert!(
                !text.contains(&good) && !text.contains(&wrong_check),
                "{text}"
            );
        }
    }
}

#[test]
fn xlsx_text_cells_import_and_a_number_typed_as_a_number_is_refused() {
    let a = id_number(5);
    let sheet = |id_cell: &dyn Fn(&mut rust_xlsxwriter::Worksheet)| {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in [
            "家庭编号",
            "姓名",
            "排位",
            "可选户型",
            "申请人全名",
            "身份证号",
        ]
        .iter()
        .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        ws.write_string(1, 0, "F1").unwrap();
        ws.write_string(1, 1, "张三").unwrap();
        ws.write_number(1, 2, 1.0).unwrap();
        ws.write_string(1, 3, "A").unwrap();
        ws.write_string(1, 4, "张三").unwrap();
        id_cell(ws);
        wb.save_to_buffer().unwrap()
    };
    let text = sheet(&|ws| {
        ws.write_string(1, 5, &a).unwrap();
    });
    let rows = import::families_with_identities(Format::Xlsx, &text).unwrap();
    let got = rows[0].2.as_ref().unwrap().id_number.as_ref().unwrap();
    assert_eq!(got.as_str(), a);
    // Typed as a number, Excel keeps 15 significant digits: the number no longer checks.
    let number = sheet(&|ws| {
        ws.write_number(1, 5, a[..17].parse::<f64>().unwrap() * 10.0)
            .unwrap();
    });
    let got = problems(import::families_with_identities(Format::Xlsx, &number));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(got[0], (2, Problem::BadIdNumber(_))), "{got:?}");
}
