//! The lease and the notice as a reader and a checker see them: the text `pdftotext`
//! extracts, the fonts `pdffonts` lists (poppler-utils; `scripts/test` installs it), the
//! size, and the recorded hash.

use std::io::Write;
use std::process::{Command, Stdio};
use xuanfang_documents::{
    mask_middle, render_lease, render_notice, sha256, uncovered, Date, DocError, LeaseData,
    NoticeData, Pdf, UnitInfo,
};

const MAX_BYTES: usize = 300 * 1024;

fn unit() -> UnitInfo {
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

fn lease(tenant: &str) -> LeaseData {
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

fn notice(tenant: &str) -> NoticeData {
    NoticeData {
        notice_no: "RZ-2026-000123".into(),
        bureau: "深圳市住房和建设局".into(),
        tenant: tenant.into(),
        tenant_id: mask_middle("440301199001011234", 4, 4),
        unit: unit(),
        term_start: Date::new(2026, 12, 15),
        term_end: Date::new(2029, 12, 14),
        key_place: "安居凤凰苑管理处（3栋首层）".into(),
        key_time: "2026年12月8日至12月20日 9:00—17:00".into(),
        move_in: Date::new(2026, 12, 15),
        contact: "0755-12345678".into(),
        issued_on: Date::new(2026, 12, 5),
    }
}

/// A 240×80 signature-like stroke, RGBA, transparent background.
fn signature_png() -> Vec<u8> {
    let (w, h) = (240u32, 80u32);
    let mut px = vec![0u8; (w * h * 4) as usize];
    for x in 10..230u32 {
        let t = x as f64 / 18.0;
        let y = (40.0 + 22.0 * t.sin() * (1.0 - x as f64 / 300.0)) as u32;
        for dy in 0..3 {
            let i = (((y + dy).min(h - 1) * w + x) * 4) as usize;
            px[i..i + 4].copy_from_slice(&[20, 30, 90, 255]);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&px).unwrap();
    out
}

fn tool(name: &str, pdf: &Pdf, args: &[&str]) -> String {
    let mut child = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{name} not found ({e}): install poppler-utils (scripts/test does)")
        });
    child.stdin.take().unwrap().write_all(&pdf.bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the PDF, lines joined with single spaces (a table cell or a line break
/// may split a phrase).
fn text(pdf: &Pdf) -> String {
    // pdftotext reads a file or `-` for stdin; `-` as output writes to stdout.
    let raw = tool("pdftotext", pdf, &["-enc", "UTF-8", "-", "-"]);
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The common checks on any rendered document.
fn check_file(pdf: &Pdf) {
    assert!(pdf.bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(
        pdf.bytes.len() < MAX_BYTES,
        "{} bytes, over {MAX_BYTES}",
        pdf.bytes.len()
    );
    assert_eq!(pdf.sha256, sha256(&pdf.bytes));
    // Checked with another tool than the crate's: coreutils' sha256sum.
    let sum = tool("sha256sum", pdf, &["-"]);
    assert_eq!(
        sum.split_whitespace().next(),
        Some(&*pdf.sha256.to_string())
    );
    assert!(
        pdf.warnings.is_empty(),
        "template warnings: {:?}",
        pdf.warnings
    );
}

/// `pdffonts` lists the CJK font as embedded and subset (`ABCDEF+` prefix), and nothing
/// else: no system font is needed to show the file.
fn check_fonts(pdf: &Pdf) {
    let out = tool("pdffonts", pdf, &["-"]);
    let rows: Vec<&str> = out
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!rows.is_empty(), "no fonts listed:\n{out}");
    for row in &rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let name = cols[0];
        let (prefix, base) = name.split_once('+').unwrap_or(("", name));
        assert!(
            prefix.len() == 6 && prefix.chars().all(|c| c.is_ascii_uppercase()),
            "font {name} is not a subset:\n{out}"
        );
        assert!(
            base.starts_with("NotoSansCJK"),
            "unexpected font {name}:\n{out}"
        );
        // Columns from the end: emb sub uni object-id generation.
        let n = cols.len();
        assert_eq!(
            &cols[n - 5..n - 2],
            &["yes", "yes", "yes"],
            "{name} must be embedded, subset, with a ToUnicode map:\n{out}"
        );
    }
}

#[test]
fn lease_with_signature_is_a_small_self_contained_pdf() {
    let pdf = render_lease(&lease("王小明"), Some(&signature_png())).unwrap();
    // `DOCUMENTS_OUT=/tmp/docs cargo test -p xuanfang-documents` keeps the file to look at.
    if let Ok(dir) = std::env::var("DOCUMENTS_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join("lease-signed.pdf"),
            &pdf.bytes,
        )
        .unwrap();
    }
    check_file(&pdf);
    check_fonts(&pdf);
    let text = text(&pdf);
    for want in [
        "公共租赁住房租赁合同",
        "王小明",
        "3栋 2002",
        "安居凤凰苑",
        "1,860.50",
        "人民币壹仟捌佰陆拾元伍角整",
        "3,721.00",
        "2026年12月15日",
        "2029年12月14日",
        "4403**********1234",
        "138****5678",
        "65.32",
        "SZGZ-2026-000123",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("待签字"), "a signed lease has the signature");
    // The signature is in the file as an image, at its own 240×80 pixels.
    let images = tool("pdfimages", &pdf, &["-list", "-"]);
    let rows: Vec<Vec<&str>> = images
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.iter().any(|r| r[3] == "240" && r[4] == "80"),
        "no 240×80 signature image:\n{images}"
    );
}

#[test]
fn lease_without_signature_leaves_the_place_to_sign() {
    let pdf = render_lease(&lease("王小明"), None).unwrap();
    check_file(&pdf);
    assert!(text(&pdf).contains("待签字"));
}

#[test]
fn same_data_same_bytes() {
    let sig = signature_png();
    let a = render_lease(&lease("王小明"), Some(&sig)).unwrap();
    let b = render_lease(&lease("王小明"), Some(&sig)).unwrap();
    assert_eq!(a.sha256, b.sha256, "the recorded hash can be recomputed");
    let other = render_lease(&lease("王小红"), Some(&sig)).unwrap();
    assert_ne!(a.sha256, other.sha256);
    let unsigned = render_lease(&lease("王小明"), None).unwrap();
    assert_ne!(
        a.sha256, unsigned.sha256,
        "the signature is part of the file"
    );
}

const HOSTILE: &str = r#"#strong[李]*四*$x^2$[a]\b_c_ `d` <e> @f // g"#;

#[test]
fn markup_in_a_name_prints_literally() {
    let pdf = render_lease(&lease(HOSTILE), Some(&signature_png())).unwrap();
    check_file(&pdf);
    let text = text(&pdf);
    assert!(text.contains(HOSTILE), "{HOSTILE:?} missing from:\n{text}");

    let pdf = render_notice(&notice(HOSTILE)).unwrap();
    check_file(&pdf);
    let text = self::text(&pdf);
    assert!(text.contains(HOSTILE), "{HOSTILE:?} missing from:\n{text}");
}

#[test]
fn a_signature_that_is_not_png_is_refused() {
    assert_eq!(
        render_lease(&lease("王小明"), Some(b"GIF89a....")),
        Err(DocError::BadSignature)
    );
    // A PNG header over garbage: it cannot be decoded.
    let mut broken = signature_png();
    broken.truncate(40);
    assert!(matches!(
        render_lease(&lease("王小明"), Some(&broken)),
        Err(DocError::Template(_))
    ));
}

#[test]
fn notice_names_the_unit_the_keys_and_the_date() {
    let pdf = render_notice(&notice("王小明")).unwrap();
    check_file(&pdf);
    check_fonts(&pdf);
    let text = text(&pdf);
    for want in [
        "入住通知书",
        "王小明",
        "安居凤凰苑3栋 2002",
        "安居凤凰苑管理处（3栋首层）",
        "2026年12月8日至12月20日 9:00—17:00",
        "2026年12月15日起",
        "0755-12345678",
        "深圳市住房和建设局",
        "2026年12月5日",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[test]
fn characters_outside_the_font_are_reported() {
    assert!(uncovered("王小明 3栋 2002 ，。（）#*$[]\\").is_empty());
    assert_eq!(uncovered("陶喆龘"), vec!['喆', '龘']);
}

/// The text of each page (pdftotext ends every page with a form feed).
fn pages(pdf: &Pdf) -> Vec<String> {
    let raw = tool("pdftotext", pdf, &["-enc", "UTF-8", "-", "-"]);
    let mut pages: Vec<String> = raw
        .split('\u{c}')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if pages.last().is_some_and(|p| p.is_empty()) {
        pages.pop();
    }
    pages
}

/// A key pick-up place long enough to push the notice onto a second page.
fn long_place() -> String {
    "安居凤凰苑管理处（3栋首层，东门进入后右转，经过物业服务中心；请走“访客通道”，勿走车道）。"
        .repeat(20)
}

#[test]
fn every_page_says_page_n_of_m() {
    let signed = render_lease(&lease("王小明"), Some(&signature_png())).unwrap();
    let long_notice = render_notice(&NoticeData {
        key_place: long_place(),
        ..notice("王小明")
    })
    .unwrap();
    if let Ok(dir) = std::env::var("DOCUMENTS_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::path::Path::new(&dir).join("notice-two-pages.pdf");
        std::fs::write(path, &long_notice.bytes).unwrap();
    }
    for pdf in [&signed, &long_notice] {
        check_file(pdf);
        let pages = pages(pdf);
        let n = pages.len();
        assert!(n >= 2, "{n} pages");
        for (i, text) in pages.iter().enumerate() {
            let want = format!("第 {} 页，共 {n} 页", i + 1);
            assert!(
                text.contains(&want),
                "{want:?} missing from page {}:\n{text}",
                i + 1
            );
        }
    }
    // The short notice is one page and says so.
    let short = render_notice(&notice("王小明")).unwrap();
    assert_eq!(pages(&short).len(), 1);
    assert!(pages(&short)[0].contains("第 1 页，共 1 页"));
}

#[test]
fn no_line_starts_with_closing_or_ends_with_opening_punctuation() {
    const NO_START: &str = "，。、；：？！）」》";
    const NO_END: &str = "（「《";
    let punctuated =
        "（一）管理处（东门）、（二）物业中心《须知》；「访客」：请问？好！".repeat(12);
    let docs = [
        render_lease(&lease("王小明"), Some(&signature_png())).unwrap(),
        render_lease(&lease(&"欧阳（小明）、".repeat(20)), None).unwrap(),
        render_notice(&notice("王小明")).unwrap(),
        render_notice(&NoticeData {
            key_place: punctuated.clone(),
            key_time: punctuated,
            ..notice("王小明")
        })
        .unwrap(),
    ];
    for pdf in &docs {
        check_file(pdf);
        // With -layout, cells of a table row share a line, two or more spaces apart.
        let raw = tool("pdftotext", pdf, &["-layout", "-enc", "UTF-8", "-", "-"]);
        let mut checked = 0;
        for line in raw.lines() {
            for piece in line.split("  ").map(str::trim).filter(|p| !p.is_empty()) {
                let (first, last) = (piece.chars().next().unwrap(), piece.chars().last().unwrap());
                assert!(
                    !NO_START.contains(first),
                    "a line starts with {first}: {line:?}"
                );
                assert!(!NO_END.contains(last), "a line ends with {last}: {line:?}");
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} lines:\n{raw}");
    }
}

#[test]
fn a_broken_template_value_cannot_break_the_layout() {
    // A tenant name with the markup's own characters, control characters and a very
    // long unbreakable word: it prints, wraps and stays in its cell.
    let name = format!("# ## | {{tenant}} > + @space 9cm\n\t{}", "W".repeat(200));
    let pdf = render_lease(&lease(&name), None).unwrap();
    check_file(&pdf);
    let text = text(&pdf);
    assert!(text.contains("# ## | {tenant} > + @space 9cm"), "{text}");
    assert!(text.matches('W').count() >= 200, "{text}");
}
