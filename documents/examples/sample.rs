//! Writes a sample lease (unsigned) and move-in notice, to read after changing a template:
//! `cargo run -p xuanfang-documents --example sample -- /tmp/docs`.

use xuanfang_documents::{
    mask_middle, render_lease, render_notice, Date, LeaseData, NoticeData, UnitInfo,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir)?;
    let unit = UnitInfo {
        project: "安居凤凰苑".into(),
        building: "3栋".into(),
        number: "2002".into(),
        floor: 20,
        layout: "两房一厅".into(),
        area_m2: 65.32,
        orientation: "南".into(),
    };
    let lease = LeaseData {
        contract_no: "SZGZ-2026-000123".into(),
        bureau: "深圳市住房和建设局".into(),
        tenant: "王小明".into(),
        tenant_id: mask_middle("440301199001011234", 4, 4),
        phone: mask_middle("13812345678", 3, 4),
        unit: unit.clone(),
        rent_fen: 186_050,
        deposit_fen: 372_100,
        term_start: Date::new(2026, 12, 15),
        term_end: Date::new(2029, 12, 14),
        signed_on: Date::new(2026, 12, 1),
    };
    let notice = NoticeData {
        notice_no: "RZ-2026-000123".into(),
        bureau: lease.bureau.clone(),
        tenant: lease.tenant.clone(),
        tenant_id: lease.tenant_id.clone(),
        unit,
        term_start: lease.term_start,
        term_end: lease.term_end,
        key_place: "安居凤凰苑管理处（3栋首层）".into(),
        key_time: "2026年12月8日至12月20日 9:00—17:00".into(),
        move_in: Date::new(2026, 12, 15),
        contact: "0755-12345678".into(),
        issued_on: Date::new(2026, 12, 5),
    };
    for (name, pdf) in [
        ("lease.pdf", render_lease(&lease, None)?),
        ("notice.pdf", render_notice(&notice)?),
    ] {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, &pdf.bytes)?;
        println!(
            "{} {} bytes sha256 {}",
            path.display(),
            pdf.bytes.len(),
            pdf.sha256
        );
    }
    Ok(())
}
