//! The documents' templates: a small line-based markup, so the Chinese wording stays in
//! files a reviewer reads without knowing Rust (`templates/README.md` describes it).
//!
//! A template is parsed into blocks first; `{field}` placeholders are filled afterwards,
//! into text that is never parsed again, so a value with `#`, `|`, `{` or `*` prints as it is.

use std::collections::{BTreeMap, BTreeSet};

/// The values of a template's fields, already formatted (`2026年12月1日`, `1,860.50`).
pub(crate) type Fields = BTreeMap<&'static str, String>;

/// Fields the layout fills itself: the page number and count, in the footer only.
pub(crate) const PAGE_FIELDS: [&str; 2] = ["page", "pages"];
/// The cell that holds the signature image, or the place to sign.
pub(crate) const SIGNATURE: &str = "signature";

/// Text with placeholders.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Rich(Vec<Piece>);

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

impl Rich {
    fn parse(s: &str) -> Result<Rich, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("a `}}` without `{{` in {s:?}"));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("a `{{` without `}}` in {s:?}"))?
                + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(format!(
                    "`{{{name}}}` is not a field name (lower-case letters and `_`)"
                ));
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            pieces.push(Piece::Field(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Rich(pieces))
    }

    /// The text with every placeholder replaced by its value. Control characters in a
    /// value (a newline in an address) print as spaces.
    pub fn fill(&self, fields: &Fields) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(name) => {
                    let value = fields
                        .get(name.as_str())
                        .ok_or_else(|| format!("the template uses an unknown field {{{name}}}"))?;
                    out.extend(value.chars().map(|c| if c.is_control() { ' ' } else { c }));
                }
            }
        }
        Ok(out)
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Piece::Field(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    fn is_signature(&self) -> bool {
        matches!(&self.0[..], [Piece::Field(name)] if name == SIGNATURE)
    }
}

/// A length as a template writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Length {
    Pt(f32),
    /// Relative to the body text size.
    Em(f32),
    /// A share of the width left by the fixed columns (tables only).
    Fr(f32),
}

impl Length {
    fn parse(s: &str) -> Result<Length, String> {
        let units: [(&str, f32); 4] = [
            ("pt", 1.0),
            ("cm", 72.0 / 2.54),
            ("mm", 72.0 / 25.4),
            ("em", 0.0),
        ];
        let num = |n: &str| {
            n.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{s:?} is not a length (e.g. 2.2cm, 10.5pt, 0.8em, 1fr)"))
        };
        if let Some(n) = s.strip_suffix("fr") {
            return Ok(Length::Fr(num(n)?));
        }
        for (unit, factor) in units {
            if let Some(n) = s.strip_suffix(unit) {
                let v = num(n)?;
                return Ok(if unit == "em" {
                    Length::Em(v)
                } else {
                    Length::Pt(v * factor)
                });
            }
        }
        Err(format!("{s:?} has no unit (pt, cm, mm, em, fr)"))
    }

    /// In points, `em` being `size`; a fraction counts as nothing.
    pub fn pt(self, size: f32) -> f32 {
        match self {
            Length::Pt(v) => v,
            Length::Em(v) => v * size,
            Length::Fr(_) => 0.0,
        }
    }
}

/// Page and text settings (`@set name value`), with the lease's values as defaults.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub margin_x: Length,
    pub margin_top: Length,
    pub margin_bottom: Length,
    /// Body text size.
    pub size: Length,
    /// The right-aligned small line (`>-`).
    pub small_size: Length,
    pub footer_size: Length,
    pub title_size: Length,
    /// Extra space after each character of the title.
    pub title_tracking: Length,
    /// Gap between two lines of a paragraph (between their em boxes).
    pub leading: Length,
    /// Gap between two blocks.
    pub spacing: Length,
    /// Gap above a clause (`##`).
    pub clause_above: Length,
    pub cell_inset_x: Length,
    pub cell_inset_y: Length,
    /// Gaps between the columns and the rows of a `@grid`.
    pub grid_gutter: Length,
    pub grid_row_gutter: Length,
    pub signature_height: Length,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            margin_x: Length::Pt(2.2 * 72.0 / 2.54),
            margin_top: Length::Pt(2.2 * 72.0 / 2.54),
            margin_bottom: Length::Pt(2.4 * 72.0 / 2.54),
            size: Length::Pt(10.5),
            small_size: Length::Pt(9.5),
            footer_size: Length::Pt(8.5),
            title_size: Length::Pt(18.0),
            title_tracking: Length::Em(0.0),
            leading: Length::Em(0.6),
            spacing: Length::Em(0.8),
            clause_above: Length::Em(0.85),
            cell_inset_x: Length::Pt(6.0),
            cell_inset_y: Length::Pt(5.0),
            grid_gutter: Length::Em(2.0),
            grid_row_gutter: Length::Em(0.8),
            signature_height: Length::Pt(2.2 * 72.0 / 2.54),
        }
    }
}

impl Settings {
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = Length::parse(value)?;
        if matches!(v, Length::Fr(_)) {
            return Err(format!("`@set {name}` takes a length, not {value:?}"));
        }
        let slot = match name {
            "margin-x" => &mut self.margin_x,
            "margin-top" => &mut self.margin_top,
            "margin-bottom" => &mut self.margin_bottom,
            "size" => &mut self.size,
            "small-size" => &mut self.small_size,
            "footer-size" => &mut self.footer_size,
            "title-size" => &mut self.title_size,
            "title-tracking" => &mut self.title_tracking,
            "leading" => &mut self.leading,
            "spacing" => &mut self.spacing,
            "clause-above" => &mut self.clause_above,
            "cell-inset-x" => &mut self.cell_inset_x,
            "cell-inset-y" => &mut self.cell_inset_y,
            "grid-gutter" => &mut self.grid_gutter,
            "grid-row-gutter" => &mut self.grid_row_gutter,
            "signature-height" => &mut self.signature_height,
            _ => return Err(format!("`@set {name}`: no such setting")),
        };
        if matches!(name, "size") && !matches!(v, Length::Pt(_)) {
            return Err("`@set size` takes pt, cm or mm".into());
        }
        *slot = v;
        Ok(())
    }
}

/// A table cell.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Text(Rich),
    /// `{signature}` alone in a cell: the image, or a line marked （待签字）.
    Signature,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Block {
    /// `# ...`: centred, large, bold.
    Title(Rich),
    /// `> ...` (body size) or `>- ...` (small): aligned right.
    Right { text: Rich, small: bool },
    /// A justified paragraph; a clause (`## title` before it) starts with its bold title.
    Para { title: Option<Rich>, body: Rich },
    /// `### ...`: a bold line.
    Heading(Rich),
    /// `+ ...`: a numbered item (numbers count up within a run of items).
    Item { number: usize, body: Rich },
    /// `@space 1.6em`.
    Space(Length),
    /// `@table` (bordered, rows may go to the next page) or `@grid` (no borders, kept on
    /// one page), then `| a | b |` rows.
    Table {
        columns: Vec<Length>,
        center: bool,
        border: bool,
        rows: Vec<Vec<Cell>>,
    },
}

#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Template {
    pub settings: Settings,
    /// `@pdf-title`: the PDF's title (shown in a viewer's title bar).
    pub pdf_title: Rich,
    /// `@footer`: on every page, with `{page}` and `{pages}`.
    pub footer: Option<Rich>,
    pub blocks: Vec<Block>,
}

impl Template {
    /// Parses a template; the error names the line.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut t = Template::default();
        let mut para: Vec<&str> = Vec::new();
        let mut clause: Option<Rich> = None;
        let mut number = 0;
        let mut in_table = false;
        let mut para_line = 0;
        for (i, raw) in src.lines().enumerate() {
            let line = raw.trim_matches([' ', '\t']);
            let err = |e: String| format!("line {}: {e}", i + 1);
            let is_row = line.starts_with('|');
            let is_text = !line.is_empty()
                && !is_row
                && !["%", "@", "#", ">", "+"]
                    .iter()
                    .any(|p| line.starts_with(p));
            // A paragraph runs until a line that is not plain text.
            if !is_text && (!para.is_empty() || clause.is_some()) {
                let body = Rich::parse(&para.concat())
                    .map_err(|e| format!("paragraph at line {para_line}: {e}"))?;
                t.blocks.push(Block::Para {
                    title: clause.take(),
                    body,
                });
                para.clear();
            }
            if !line.starts_with('+') && !line.starts_with('%') {
                number = 0;
            }
            if !is_row && !line.starts_with('%') {
                in_table = false;
            }
            if line.is_empty() || line.starts_with('%') {
                continue;
            }
            if is_text {
                if para.is_empty() {
                    para_line = i + 1;
                }
                // Checked line by line so the error names the line.
                Rich::parse(line).map_err(err)?;
                para.push(line);
            } else if is_row {
                let Some(Block::Table { columns, rows, .. }) =
                    t.blocks.last_mut().filter(|_| in_table)
                else {
                    return Err(err("a `|` row outside a @table or @grid".into()));
                };
                let inner = line.strip_prefix('|').unwrap_or(line);
                let inner = inner.strip_suffix('|').unwrap_or(inner);
                let cells = inner
                    .split('|')
                    .map(|c| {
                        let rich = Rich::parse(c.trim_matches([' ', '\t']))?;
                        Ok(if rich.is_signature() {
                            Cell::Signature
                        } else {
                            Cell::Text(rich)
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(err)?;
                if cells.len() != columns.len() {
                    return Err(err(format!(
                        "{} cells in a row of a table with {} columns",
                        cells.len(),
                        columns.len()
                    )));
                }
                rows.push(cells);
            } else if let Some(rest) = line.strip_prefix("###") {
                t.blocks
                    .push(Block::Heading(Rich::parse(rest.trim()).map_err(err)?));
            } else if let Some(rest) = line.strip_prefix("##") {
                clause = Some(Rich::parse(rest.trim()).map_err(err)?);
            } else if let Some(rest) = line.strip_prefix('#') {
                t.blocks
                    .push(Block::Title(Rich::parse(rest.trim()).map_err(err)?));
            } else if let Some(rest) = line.strip_prefix(">-") {
                let text = Rich::parse(rest.trim()).map_err(err)?;
                t.blocks.push(Block::Right { text, small: true });
            } else if let Some(rest) = line.strip_prefix('>') {
                let text = Rich::parse(rest.trim()).map_err(err)?;
                t.blocks.push(Block::Right { text, small: false });
            } else if let Some(rest) = line.strip_prefix('+') {
                number += 1;
                let body = Rich::parse(rest.trim()).map_err(err)?;
                t.blocks.push(Block::Item { number, body });
            } else {
                let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
                let rest = rest.trim();
                match word {
                    "@set" => {
                        let (name, value) = rest
                            .split_once(' ')
                            .ok_or_else(|| err("`@set name value`".into()))?;
                        t.settings.set(name, value.trim()).map_err(err)?;
                    }
                    "@pdf-title" => t.pdf_title = Rich::parse(rest).map_err(err)?,
                    "@footer" => t.footer = Some(Rich::parse(rest).map_err(err)?),
                    "@space" => t
                        .blocks
                        .push(Block::Space(Length::parse(rest).map_err(err)?)),
                    "@table" | "@grid" => {
                        let mut columns = Vec::new();
                        let mut center = false;
                        for w in rest.split_whitespace() {
                            if w == "center" {
                                center = true;
                            } else {
                                columns.push(Length::parse(w).map_err(err)?);
                            }
                        }
                        if columns.is_empty() {
                            return Err(err(format!("{word} needs column widths")));
                        }
                        t.blocks.push(Block::Table {
                            columns,
                            center,
                            border: word == "@table",
                            rows: Vec::new(),
                        });
                        in_table = true;
                    }
                    _ => return Err(err(format!("unknown directive {word}"))),
                }
            }
        }
        if !para.is_empty() || clause.is_some() {
            let body = Rich::parse(&para.concat())
                .map_err(|e| format!("paragraph at line {para_line}: {e}"))?;
            t.blocks.push(Block::Para {
                title: clause.take(),
                body,
            });
        }
        Ok(t)
    }

    /// Every field the template uses (`{page}` and `{pages}` left out).
    pub fn fields(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut signature = false;
        let mut add = |r: &Rich| out.extend(r.fields().map(str::to_string));
        add(&self.pdf_title);
        if let Some(f) = &self.footer {
            add(f);
        }
        for b in &self.blocks {
            match b {
                Block::Title(r) | Block::Heading(r) => add(r),
                Block::Right { text, .. } => add(text),
                Block::Item { body, .. } => add(body),
                Block::Para { title, body } => {
                    title.iter().for_each(&mut add);
                    add(body);
                }
                Block::Space(_) => {}
                Block::Table { rows, .. } => {
                    for cell in rows.iter().flatten() {
                        match cell {
                            Cell::Text(r) => add(r),
                            Cell::Signature => signature = true,
                        }
                    }
                }
            }
        }
        if signature {
            out.insert(SIGNATURE.to_string());
        }
        for p in PAGE_FIELDS {
            out.remove(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_fields() {
        let t = Template::parse(
            "% a comment\n@set size 11pt\n@footer 第 {page} 页\n# 入住通知书\n>- 编号：{no}\n\n\
             {tenant}：\n　　您家庭\n已完成。\n## 第一条　租赁\n甲方{x}。\n@table 8.5em 1fr\n| 房屋 | {unit} |\n\
             + 一\n+ 二\n@grid 1fr 1fr\n| {a} | {signature} |\n",
        )
        .unwrap();
        assert_eq!(t.settings.size, Length::Pt(11.0));
        let kinds: Vec<&str> = t
            .blocks
            .iter()
            .map(|b| match b {
                Block::Title(_) => "title",
                Block::Right { small: true, .. } => "small",
                Block::Right { .. } => "right",
                Block::Para { title: None, .. } => "para",
                Block::Para { .. } => "clause",
                Block::Heading(_) => "heading",
                Block::Item { .. } => "item",
                Block::Space(_) => "space",
                Block::Table { border: true, .. } => "table",
                Block::Table { .. } => "grid",
            })
            .collect();
        assert_eq!(
            kinds,
            ["title", "small", "para", "clause", "table", "item", "item", "grid"]
        );
        let fields: Vec<String> = t.fields().into_iter().collect();
        assert_eq!(fields, ["a", "no", "signature", "tenant", "unit", "x"]);
        // Paragraph lines join without a space (Chinese text), keeping the indent.
        let Block::Para { body, .. } = &t.blocks[2] else {
            panic!()
        };
        let mut f = Fields::new();
        f.insert("tenant", "王小明".into());
        assert_eq!(body.fill(&f).unwrap(), "王小明：　　您家庭已完成。");
        let Block::Item { number, .. } = &t.blocks[6] else {
            panic!()
        };
        assert_eq!(*number, 2);
    }

    #[test]
    fn values_are_not_markup() {
        let r = Rich::parse("乙方：{tenant}。").unwrap();
        let mut f = Fields::new();
        f.insert("tenant", "{x} | # *\n李".into());
        assert_eq!(r.fill(&f).unwrap(), "乙方：{x} | # * 李。");
        assert!(r.fill(&Fields::new()).unwrap_err().contains("{tenant}"));
    }

    #[test]
    fn mistakes_name_the_line() {
        for (src, want) in [
            ("甲\n{Tenant}", "line 2"),
            ("@table 1fr\n| a | b |", "2 cells"),
            ("| a |", "outside"),
            ("@set colour red", "no unit"),
            ("@set colour 1pt", "no such setting"),
            ("@frame 1pt", "unknown directive"),
            ("甲 {tenant", "without"),
            ("@table", "column widths"),
        ] {
            let e = Template::parse(src).unwrap_err();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }
}
