//! The embedded font as the layout measures it: one glyph per character from the cmap and
//! its advance from hmtx (CJK text needs no complex shaping; Latin without kerning is fine
//! for a lease).

use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The embedded font: Noto Sans CJK SC, subset to GB 2312 (see `fonts/README.md`).
pub const FONT: &[u8] = include_bytes!("../fonts/NotoSansSC-GB2312.otf");

/// One character's glyph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GlyphInfo {
    pub id: u32,
    /// Advance in em.
    pub advance: f32,
}

pub(crate) struct Face {
    glyphs: HashMap<char, GlyphInfo>,
    notdef: GlyphInfo,
    /// The same bytes, as krilla embeds (and subsets) them.
    pub krilla: krilla::text::Font,
}

/// Parsed once: the whole cmap (about 7,500 characters) into a map, so measuring a
/// character is one hash look-up.
pub(crate) static FACE: LazyLock<Face> = LazyLock::new(|| {
    let font = FontRef::new(FONT).expect("the embedded font parses");
    let upem = font
        .metrics(Size::unscaled(), LocationRef::default())
        .units_per_em as f32;
    let metrics = font.glyph_metrics(Size::unscaled(), LocationRef::default());
    let advance = |gid| metrics.advance_width(gid).unwrap_or(upem) / upem;
    let glyphs = font
        .charmap()
        .mappings()
        .filter_map(|(cp, gid)| {
            let c = char::from_u32(cp)?;
            (gid.to_u32() != 0).then(|| {
                (
                    c,
                    GlyphInfo {
                        id: gid.to_u32(),
                        advance: advance(gid),
                    },
                )
            })
        })
        .collect();
    let notdef = GlyphInfo {
        id: 0,
        advance: advance(skrifa::GlyphId::new(0)),
    };
    let krilla = krilla::text::Font::new(krilla::Data::from(FONT), 0)
        .expect("krilla reads the embedded font");
    Face {
        glyphs,
        notdef,
        krilla,
    }
});

impl Face {
    /// The glyph for `c`, or `.notdef` (an empty box) when the font lacks it.
    pub fn glyph(&self, c: char) -> GlyphInfo {
        self.glyphs.get(&c).copied().unwrap_or(self.notdef)
    }

    pub fn covers(&self, c: char) -> bool {
        self.glyphs.contains_key(&c)
    }

    /// Advance of `c` in em.
    pub fn advance(&self, c: char) -> f32 {
        self.glyph(c).advance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hanzi_are_one_em_and_latin_narrower() {
        assert_eq!(FACE.advance('租'), 1.0);
        assert_eq!(FACE.advance('，'), 1.0);
        let a = FACE.advance('a');
        assert!(a > 0.3 && a < 0.7, "{a}");
        assert!(FACE.covers('王'));
        assert!(!FACE.covers('喆'));
        assert_eq!(FACE.glyph('喆').id, 0);
    }
}
