//! Draws laid-out pages with krilla: the embedded font (krilla subsets it and writes the
//! ToUnicode map, so the text can be copied and searched), rules and the signature image.

use crate::font::FACE;
use crate::layout::{Item, Laid, TextRun, PAGE_H, PAGE_W};
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{GlyphId, KrillaGlyph};
use krilla::{Document, SerializeSettings};

/// What the PDF says about itself. No creation date: the same data gives the same bytes.
pub(crate) struct Info {
    pub title: String,
    pub author: String,
    /// The stable document id (the contract or notice number).
    pub ident: String,
}

/// Why drawing failed.
pub(crate) enum DrawError {
    /// The signature image could not be decoded.
    Image(String),
    Pdf(String),
}

pub(crate) fn draw(
    laid: &Laid,
    info: Info,
    signature: Option<&Image>,
) -> Result<Vec<u8>, DrawError> {
    let settings = SerializeSettings {
        // No tags: the documents are printed and hashed, not read aloud.
        enable_tagging: false,
        ..SerializeSettings::default()
    };
    let mut doc = Document::new_with(settings);
    doc.set_metadata(
        Metadata::new()
            .title(info.title)
            .authors(vec![info.author])
            .creator("xuanfang".into())
            .language("zh-CN".into())
            .document_id(info.ident),
    );
    for page in &laid.pages {
        let size = PageSettings::from_wh(PAGE_W, PAGE_H).expect("A4 is a valid size");
        let mut p = doc.start_page_with(size);
        let mut s = p.surface();
        for item in page.body.iter().chain(&page.footer) {
            match item {
                Item::Text(t) => text(&mut s, t),
                Item::Rule {
                    from,
                    to,
                    width,
                    gray,
                } => {
                    let mut b = PathBuilder::new();
                    b.move_to(from.0, from.1);
                    b.line_to(to.0, to.1);
                    if let Some(path) = b.finish() {
                        s.set_fill(None);
                        s.set_stroke(Some(Stroke {
                            paint: luma::Color::new(*gray).into(),
                            width: *width,
                            ..Stroke::default()
                        }));
                        s.draw_path(&path);
                    }
                }
                Item::Image { x, y, w, h } => {
                    if let (Some(image), Some(size)) = (signature, Size::from_wh(*w, *h)) {
                        s.push_transform(&Transform::from_translate(*x, *y));
                        s.draw_image(image.clone(), size);
                        s.pop();
                    }
                }
            }
        }
        s.finish();
        p.finish();
    }
    doc.finish().map_err(|e| match e {
        krilla::error::KrillaError::Image(_, _, msg) => DrawError::Image(msg),
        other => DrawError::Pdf(other.to_string()),
    })
}

/// One run: one glyph per character, advances as laid out.
fn text(s: &mut Surface, t: &TextRun) {
    let mut glyphs = Vec::with_capacity(t.advances.len());
    for ((i, c), adv) in t.text.char_indices().zip(&t.advances) {
        glyphs.push(KrillaGlyph::new(
            GlyphId::new(FACE.glyph(c).id),
            adv / t.size,
            0.0,
            0.0,
            0.0,
            i..i + c.len_utf8(),
            None,
        ));
    }
    let paint = luma::Color::new(t.gray);
    s.set_fill(Some(Fill {
        paint: paint.into(),
        ..Fill::default()
    }));
    s.set_stroke((t.stroke > 0.0).then(|| Stroke {
        paint: paint.into(),
        width: t.stroke,
        ..Stroke::default()
    }));
    s.draw_glyphs(
        Point::from_xy(t.x, t.y),
        &glyphs,
        FACE.krilla.clone(),
        &t.text,
        t.size,
        false,
    );
}
