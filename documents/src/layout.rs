//! Our own layout: blocks of a parsed template, filled with the fields, into A4 pages of
//! positioned text runs, rules and the signature image. Everything is laid out before
//! anything is drawn, so the footer can say 第 N 页，共 M 页.
//!
//! Coordinates are points from the page's top-left corner, y downwards (as krilla draws).
//! A line of text is an em box: 0.88 em above the baseline and 0.12 em below (the font's
//! ideographic em box), stacked with `leading` between two lines.

use crate::font::FACE;
use crate::linebreak::break_lines;
use crate::template::{Block, Cell, Fields, Length, Rich, Template};

/// A4 in points.
pub(crate) const PAGE_W: f32 = 595.2756;
pub(crate) const PAGE_H: f32 = 841.8898;
const ASCENT: f32 = 0.88;
#[cfg(test)]
const DESCENT: f32 = 0.12;

const BODY_GRAY: u8 = 0;
const FOOTER_GRAY: u8 = 90;
const RULE_GRAY: u8 = 120;
const PLACEHOLDER_GRAY: u8 = 140;
const RULE_WIDTH: f32 = 0.5;
/// The thin stroke that makes the Regular glyphs bold (only Regular is embedded).
const BOLD_STROKE: f32 = 0.25;
const TITLE_STROKE: f32 = 0.45;
/// What an unsigned lease shows where the signature goes.
pub(crate) const UNSIGNED: &str = "（待签字）";

/// Text on one line in one style.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TextRun {
    pub x: f32,
    /// The baseline.
    pub y: f32,
    pub size: f32,
    /// Width of the bold stroke; 0 for none.
    pub stroke: f32,
    pub gray: u8,
    pub text: String,
    /// The advance of each character in points (justification included).
    pub advances: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    Text(TextRun),
    /// A straight line (table borders, the line to sign on).
    Rule {
        from: (f32, f32),
        to: (f32, f32),
        width: f32,
        gray: u8,
    },
    /// The signature image.
    Image {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

#[cfg(test)]
impl Item {
    /// The box the item paints: left, top, right, bottom.
    pub fn bounds(&self) -> [f32; 4] {
        match self {
            // The em box: the glyphs' ink, bold stroke included, lies inside it (a hanzi's
            // face leaves about 0.05 em on each side; the stroke is at most 0.025 em).
            Item::Text(t) => {
                let w: f32 = t.advances.iter().sum();
                [t.x, t.y - ASCENT * t.size, t.x + w, t.y + DESCENT * t.size]
            }
            Item::Rule {
                from, to, width, ..
            } => {
                let h = width / 2.0;
                [
                    from.0.min(to.0) - h,
                    from.1.min(to.1) - h,
                    from.0.max(to.0) + h,
                    from.1.max(to.1) + h,
                ]
            }
            Item::Image { x, y, w, h } => [*x, *y, x + w, y + h],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Page {
    /// Inside the margins.
    pub body: Vec<Item>,
    /// In the bottom margin.
    pub footer: Vec<Item>,
}

/// The laid-out document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Laid {
    pub pages: Vec<Page>,
    /// The area inside the margins: left, top, right, bottom.
    pub content: [f32; 4],
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Justify,
    Left,
    Center,
    Right,
}

#[derive(Clone, Copy)]
struct Style {
    size: f32,
    /// Stroke of the bold part.
    stroke: f32,
    gray: u8,
    tracking: f32,
}

/// Settings in points.
struct Metrics {
    left: f32,
    top: f32,
    width: f32,
    bottom: f32,
    margin_bottom: f32,
    size: f32,
    small: f32,
    footer: f32,
    title: f32,
    tracking: f32,
    leading: f32,
    spacing: f32,
    clause_above: f32,
    inset_x: f32,
    inset_y: f32,
    gutter: f32,
    row_gutter: f32,
    signature_h: f32,
}

impl Metrics {
    fn new(t: &Template) -> Metrics {
        let s = &t.settings;
        let size = s.size.pt(0.0);
        let pt = |l: Length| l.pt(size);
        let left = pt(s.margin_x);
        Metrics {
            left,
            top: pt(s.margin_top),
            width: PAGE_W - 2.0 * left,
            bottom: PAGE_H - pt(s.margin_bottom),
            margin_bottom: pt(s.margin_bottom),
            size,
            small: pt(s.small_size),
            footer: pt(s.footer_size),
            title: pt(s.title_size),
            tracking: pt(s.title_tracking),
            leading: pt(s.leading),
            spacing: pt(s.spacing),
            clause_above: pt(s.clause_above),
            inset_x: pt(s.cell_inset_x),
            inset_y: pt(s.cell_inset_y),
            gutter: pt(s.grid_gutter),
            row_gutter: pt(s.grid_row_gutter),
            signature_h: pt(s.signature_height),
        }
    }
}

/// Lines of runs, each at x from 0 and baseline 0.
type SetLines = Vec<Vec<TextRun>>;

/// Breaks `text` into lines `width` wide; the bytes before `bold_to` are bold.
fn set_lines(text: &str, bold_to: usize, style: Style, width: f32, align: Align) -> SetLines {
    let adv = |c: char| FACE.advance(c) * style.size + style.tracking;
    let mut out = Vec::new();
    for line in break_lines(text, width, adv) {
        let s = &text[line.range.clone()];
        let n = s.chars().count();
        let leftover = (width - line.width).max(0.0);
        let mut extra = 0.0;
        let mut x = match align {
            Align::Center => leftover / 2.0,
            Align::Right => leftover,
            Align::Left | Align::Justify => 0.0,
        };
        // Justified: the leftover goes between the characters, unless the gaps would be
        // wide (a line cut short by a long word stays ragged).
        if align == Align::Justify && !line.last && n > 1 {
            let gap = leftover / (n - 1) as f32;
            if gap <= 0.5 * style.size {
                extra = gap;
            }
        }
        let mut runs = Vec::new();
        let mut seen = 0;
        let split = bold_to.clamp(line.range.start, line.range.end);
        for (range, bold) in [
            (line.range.start..split, true),
            (split..line.range.end, false),
        ] {
            if range.is_empty() {
                continue;
            }
            let part = &text[range];
            let advances: Vec<f32> = part
                .chars()
                .map(|c| {
                    seen += 1;
                    adv(c) + if seen < n { extra } else { 0.0 }
                })
                .collect();
            let w: f32 = advances.iter().sum();
            runs.push(TextRun {
                x,
                y: 0.0,
                size: style.size,
                stroke: if bold { style.stroke } else { 0.0 },
                gray: style.gray,
                text: part.to_string(),
                advances,
            });
            x += w;
        }
        out.push(runs);
    }
    out
}

fn lines_height(n: usize, size: f32, leading: f32) -> f32 {
    if n == 0 {
        0.0
    } else {
        n as f32 * size + (n - 1) as f32 * leading
    }
}

struct Ctx {
    m: Metrics,
    pages: Vec<Page>,
    y: f32,
}

impl Ctx {
    fn page(&mut self) -> &mut Vec<Item> {
        &mut self.pages.last_mut().expect("a page").body
    }

    fn at_top(&self) -> bool {
        self.y <= self.m.top + 1e-3
    }

    /// Starts a new page unless `h` fits on this one (or this one is still empty).
    fn ensure(&mut self, h: f32) {
        if self.y + h > self.m.bottom + 1e-3 && !self.at_top() {
            self.pages.push(Page::default());
            self.y = self.m.top;
        }
    }

    fn gap(&mut self, h: f32) {
        if !self.at_top() {
            self.y += h;
        }
    }

    /// Places lines at the cursor, left edge `x`, breaking the page between lines.
    fn place(&mut self, lines: SetLines, x: f32, size: f32, label: Option<TextRun>) {
        let mut label = label;
        for (i, runs) in lines.into_iter().enumerate() {
            if i > 0 {
                self.y += self.m.leading;
            }
            self.ensure(size);
            let baseline = self.y + ASCENT * size;
            if let Some(mut l) = label.take() {
                l.x += self.m.left;
                l.y = baseline;
                self.page().push(Item::Text(l));
            }
            for mut run in runs {
                run.x += x;
                run.y = baseline;
                self.page().push(Item::Text(run));
            }
            self.y += size;
        }
    }

    fn body_style(&self) -> Style {
        Style {
            size: self.m.size,
            stroke: BOLD_STROKE,
            gray: BODY_GRAY,
            tracking: 0.0,
        }
    }

    fn table(
        &mut self,
        columns: &[Length],
        center: bool,
        border: bool,
        rows: &[Vec<Option<String>>],
        signature: Option<(u32, u32)>,
    ) -> Result<(), String> {
        let m = &self.m;
        let gutter = if border { 0.0 } else { m.gutter };
        let (inset_x, inset_y) = if border {
            (m.inset_x, m.inset_y)
        } else {
            (0.0, 0.0)
        };
        // Borders are centred on the cell edges: inset the table by half a rule so they
        // stay inside the margins.
        let half = if border { RULE_WIDTH / 2.0 } else { 0.0 };
        let avail = m.width - 2.0 * half - gutter * (columns.len() - 1) as f32;
        let fixed: f32 = columns.iter().map(|c| c.pt(m.size)).sum();
        let fr: f32 = columns
            .iter()
            .map(|c| if let Length::Fr(f) = c { *f } else { 0.0 })
            .sum();
        let widths: Vec<f32> = columns
            .iter()
            .map(|c| match c {
                Length::Fr(f) => (avail - fixed).max(0.0) * f / fr,
                other => other.pt(m.size),
            })
            .collect();
        let mut xs = Vec::new();
        let mut x = m.left + half;
        for w in &widths {
            xs.push(x);
            x += w + gutter;
        }
        let style = self.body_style();
        let align = if center {
            Align::Center
        } else {
            Align::Justify
        };
        // Lay out every cell first: a row's height is its tallest cell.
        let mut laid = Vec::new();
        for row in rows {
            let mut cells = Vec::new();
            let mut h: f32 = 0.0;
            for (text, w) in row.iter().zip(&widths) {
                if let Some(text) = text {
                    let lines = set_lines(text, 0, style, w - 2.0 * inset_x, align);
                    h = h.max(lines_height(lines.len(), m.size, m.leading));
                    cells.push(Some(lines));
                } else {
                    h = h.max(m.signature_h);
                    cells.push(None);
                }
            }
            let row_h = h + 2.0 * inset_y;
            if row_h > m.bottom - m.top {
                return Err("a table row is too long to fit on a page".into());
            }
            laid.push((cells, row_h));
        }
        if !border {
            // A grid (the signature block) stays on one page.
            let total: f32 = laid.iter().map(|(_, h)| h).sum::<f32>()
                + m.row_gutter * laid.len().saturating_sub(1) as f32;
            self.ensure(total);
        }
        let mut page = 0;
        for (r, (cells, row_h)) in laid.into_iter().enumerate() {
            if r > 0 && !border {
                self.y += self.m.row_gutter;
            }
            self.ensure(row_h + 2.0 * half);
            if self.pages.len() != page {
                // The first row on a page: room for the upper half of its top border.
                page = self.pages.len();
                self.y += half;
            }
            let top = self.y;
            for (c, cell) in cells.into_iter().enumerate() {
                let (x, w) = (xs[c], widths[c]);
                match cell {
                    Some(lines) => {
                        let h = lines_height(lines.len(), self.m.size, self.m.leading);
                        let dy = if center {
                            (row_h - 2.0 * inset_y - h) / 2.0
                        } else {
                            0.0
                        };
                        for (i, runs) in lines.into_iter().enumerate() {
                            let baseline = top
                                + inset_y
                                + dy
                                + i as f32 * (self.m.size + self.m.leading)
                                + ASCENT * self.m.size;
                            for mut run in runs {
                                run.x += x + inset_x;
                                run.y = baseline;
                                self.page().push(Item::Text(run));
                            }
                        }
                    }
                    None => {
                        let sig_h = self.m.signature_h;
                        let (x, y, w) = (x + inset_x, top + inset_y, w - 2.0 * inset_x);
                        self.signature(x, y, w, sig_h, signature);
                    }
                }
            }
            if border {
                let bottom = top + row_h;
                let right = xs[widths.len() - 1] + widths[widths.len() - 1];
                let mut rule = |from, to| {
                    self.pages
                        .last_mut()
                        .expect("a page")
                        .body
                        .push(Item::Rule {
                            from,
                            to,
                            width: RULE_WIDTH,
                            gray: RULE_GRAY,
                        })
                };
                rule((xs[0], top), (right, top));
                rule((xs[0], bottom), (right, bottom));
                for &x in xs.iter().chain([&right]) {
                    rule((x, top), (x, bottom));
                }
            }
            self.y = top + row_h;
        }
        self.y += half;
        Ok(())
    }

    /// The signature scaled into the box (keeping its proportions), or a line to sign on
    /// marked （待签字）.
    fn signature(&mut self, x: f32, y: f32, w: f32, h: f32, image: Option<(u32, u32)>) {
        match image {
            Some((iw, ih)) => {
                let ratio = iw.max(1) as f32 / ih.max(1) as f32;
                let (mut sw, mut sh) = (h * ratio, h);
                if sw > w {
                    sw = w;
                    sh = w / ratio;
                }
                self.page().push(Item::Image { x, y, w: sw, h: sh });
            }
            None => {
                self.page().push(Item::Rule {
                    from: (x + RULE_WIDTH / 2.0, y + h),
                    to: (x + w - RULE_WIDTH / 2.0, y + h),
                    width: RULE_WIDTH,
                    gray: RULE_GRAY,
                });
                let style = Style {
                    gray: PLACEHOLDER_GRAY,
                    ..self.body_style()
                };
                let size = self.m.size;
                for runs in set_lines(UNSIGNED, 0, style, w, Align::Center) {
                    for mut run in runs {
                        run.x += x;
                        run.y = y + h / 2.0 + (ASCENT - 0.5) * size;
                        self.page().push(Item::Text(run));
                    }
                }
            }
        }
    }
}

fn fill(r: &Rich, fields: &Fields) -> Result<String, String> {
    r.fill(fields)
}

/// Lays out a template with its fields; `signature` is the image's size in pixels, if signed.
pub(crate) fn layout(
    t: &Template,
    fields: &Fields,
    signature: Option<(u32, u32)>,
) -> Result<Laid, String> {
    let m = Metrics::new(t);
    let mut ctx = Ctx {
        y: m.top,
        pages: vec![Page::default()],
        m,
    };
    let mut prev_item = false;
    for block in &t.blocks {
        let (left, width) = (ctx.m.left, ctx.m.width);
        let is_item = matches!(block, Block::Item { .. });
        match block {
            Block::Title(r) => {
                ctx.gap(ctx.m.spacing);
                let text = fill(r, fields)?;
                let style = Style {
                    size: ctx.m.title,
                    stroke: TITLE_STROKE,
                    gray: BODY_GRAY,
                    tracking: ctx.m.tracking,
                };
                let lines = set_lines(&text, text.len(), style, width, Align::Center);
                ctx.place(lines, left, ctx.m.title, None);
            }
            Block::Right { text, small } => {
                ctx.gap(ctx.m.spacing);
                let size = if *small { ctx.m.small } else { ctx.m.size };
                let style = Style {
                    size,
                    ..ctx.body_style()
                };
                let lines = set_lines(&fill(text, fields)?, 0, style, width, Align::Right);
                ctx.place(lines, left, size, None);
            }
            Block::Para { title, body } => {
                let (text, bold_to) = match title {
                    Some(t) => {
                        let t = fill(t, fields)?;
                        let n = t.len();
                        (format!("{t}　{}", fill(body, fields)?), n)
                    }
                    None => (fill(body, fields)?, 0),
                };
                ctx.gap(if title.is_some() {
                    ctx.m.clause_above
                } else {
                    ctx.m.spacing
                });
                let lines = set_lines(&text, bold_to, ctx.body_style(), width, Align::Justify);
                ctx.place(lines, left, ctx.m.size, None);
            }
            Block::Heading(r) => {
                ctx.gap(ctx.m.spacing);
                // Not alone at the foot of a page: room for the first line after it too.
                ctx.ensure(2.0 * ctx.m.size + ctx.m.spacing);
                let text = fill(r, fields)?;
                let lines = set_lines(&text, text.len(), ctx.body_style(), width, Align::Left);
                ctx.place(lines, left, ctx.m.size, None);
            }
            Block::Item { number, body } => {
                ctx.gap(if prev_item {
                    ctx.m.leading
                } else {
                    ctx.m.spacing
                });
                let indent = 1.6 * ctx.m.size;
                let label = set_lines(
                    &format!("{number}."),
                    0,
                    ctx.body_style(),
                    indent,
                    Align::Left,
                )
                .into_iter()
                .flatten()
                .next();
                let lines = set_lines(
                    &fill(body, fields)?,
                    0,
                    ctx.body_style(),
                    width - indent,
                    Align::Justify,
                );
                ctx.place(lines, left + indent, ctx.m.size, label);
            }
            Block::Space(l) => ctx.gap(l.pt(ctx.m.size)),
            Block::Table {
                columns,
                center,
                border,
                rows,
            } => {
                ctx.gap(ctx.m.spacing);
                let rows = rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|cell| match cell {
                                Cell::Text(r) => fill(r, fields).map(Some),
                                Cell::Signature => Ok(None),
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ctx.table(columns, *center, *border, &rows, signature)?;
            }
        }
        prev_item = is_item;
    }
    let m = &ctx.m;
    let content = [m.left, m.top, m.left + m.width, m.bottom];
    if let Some(footer) = &t.footer {
        let n = ctx.pages.len();
        let style = Style {
            size: m.footer,
            stroke: 0.0,
            gray: FOOTER_GRAY,
            tracking: 0.0,
        };
        for (i, page) in ctx.pages.iter_mut().enumerate() {
            let mut f = fields.clone();
            f.insert("page", (i + 1).to_string());
            f.insert("pages", n.to_string());
            let text = footer.fill(&f)?;
            // In the middle of the bottom margin.
            let mut baseline = m.bottom + m.margin_bottom / 2.0;
            for runs in set_lines(&text, 0, style, m.width, Align::Center) {
                for mut run in runs {
                    run.x += m.left;
                    run.y = baseline;
                    page.footer.push(Item::Text(run));
                }
                baseline += m.footer * 1.4;
            }
        }
    }
    Ok(Laid {
        pages: ctx.pages,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn lease(tenant: &str, signed: bool) -> Laid {
        let t = Template::parse(crate::LEASE_TEMPLATE).unwrap();
        let sig = signed.then_some((240, 80));
        layout(&t, &crate::lease_fields(&sample::lease(tenant)), sig).unwrap()
    }

    fn notice(key_place: &str) -> Laid {
        let t = Template::parse(crate::NOTICE_TEMPLATE).unwrap();
        layout(&t, &crate::notice_fields(&sample::notice(key_place)), None).unwrap()
    }

    fn texts(page: &Page) -> impl Iterator<Item = &TextRun> {
        page.body.iter().filter_map(|i| match i {
            Item::Text(t) => Some(t),
            _ => None,
        })
    }

    /// Every item inside the margins, the footer in the bottom margin, on the page.
    fn check_margins(laid: &Laid) {
        let [l, t, r, b] = laid.content;
        let eps = 0.01;
        for (n, page) in laid.pages.iter().enumerate() {
            for item in &page.body {
                let [il, it, ir, ib] = item.bounds();
                assert!(
                    il >= l - eps && it >= t - eps && ir <= r + eps && ib <= b + eps,
                    "page {}: {item:?} at {:?} leaves {:?}",
                    n + 1,
                    item.bounds(),
                    laid.content
                );
            }
            assert!(!page.footer.is_empty(), "page {} has no footer", n + 1);
            for item in &page.footer {
                let [il, it, ir, ib] = item.bounds();
                assert!(il >= l - eps && ir <= r + eps && it >= b && ib <= PAGE_H);
            }
        }
    }

    const LONG_NAME: &str = "欧阳王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤";

    #[test]
    fn text_never_leaves_the_margins() {
        check_margins(&lease("王小明", true));
        check_margins(&lease("王小明", false));
        check_margins(&lease(LONG_NAME, true));
        check_margins(&lease(
            "Wang Xiaoming-Averyveryverylongfamilynamewithoutanyspacesinitatall",
            false,
        ));
        check_margins(&notice("安居凤凰苑管理处（3栋首层）"));
        check_margins(&notice(
            &"安居凤凰苑管理处（3栋首层，东门进入后右转，经过物业服务中心）".repeat(12),
        ));
    }

    #[test]
    fn long_names_wrap_inside_their_table_cell() {
        let laid = lease(LONG_NAME, true);
        let [l, _, r, _] = laid.content;
        let page = &laid.pages[0];
        // The name's cell: right of the 8.5em label column, inside the cell's insets.
        let cell_left = l + 8.5 * 10.5 + 6.0;
        let runs: Vec<&TextRun> = texts(page)
            .filter(|t| t.text.chars().all(|c| LONG_NAME.contains(c)) && t.text.chars().count() > 3)
            .collect();
        let baselines: std::collections::BTreeSet<i64> =
            runs.iter().map(|t| t.y.round() as i64).collect();
        assert!(
            baselines.len() >= 3,
            "the name is on {} lines",
            baselines.len()
        );
        let printed: String = runs.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(printed, LONG_NAME, "all of it, in order");
        for t in runs {
            let [tl, _, tr, _] = Item::Text(t.clone()).bounds();
            assert!(tl >= cell_left - 0.01 && tr <= r - 6.0 + 0.01, "{t:?}");
        }
        // The rows below moved down: the ID row's label is under the name's last line.
        let id = texts(page).find(|t| t.text == "身份证号码").unwrap();
        assert!(id.y > *baselines.iter().last().unwrap() as f32 + 10.0);
    }

    #[test]
    fn justified_lines_reach_the_right_margin_and_the_last_does_not() {
        let laid = lease("王小明", true);
        let r = laid.content[2];
        let page = &laid.pages[0];
        // 第三条: a clause of three lines, its bold title and body on the first.
        let from = texts(page)
            .find(|t| t.text.starts_with("第三条"))
            .unwrap()
            .y;
        let to = texts(page)
            .find(|t| t.text.starts_with("第四条"))
            .unwrap()
            .y;
        let mut ends: std::collections::BTreeMap<i64, f32> = Default::default();
        for t in texts(page).filter(|t| t.y >= from && t.y < to) {
            let end = t.x + t.advances.iter().sum::<f32>();
            let e = ends.entry(t.y.round() as i64).or_insert(0.0);
            *e = e.max(end);
        }
        let ends: Vec<f32> = ends.into_values().collect();
        assert!(ends.len() >= 2, "{ends:?}");
        let (last, full) = ends.split_last().unwrap();
        for e in full {
            assert!((e - r).abs() < 0.01, "{e} is not at the margin {r}");
        }
        assert!(*last < r - 20.0, "the last line is ragged: {last}");
    }

    #[test]
    fn a_long_document_has_page_n_of_m_on_every_page() {
        let laid = notice(&"安居凤凰苑管理处（3栋首层，东门进入后右转）".repeat(40));
        let n = laid.pages.len();
        assert!(n >= 2, "{n} pages");
        for (i, page) in laid.pages.iter().enumerate() {
            let footer: String = page
                .footer
                .iter()
                .filter_map(|i| match i {
                    Item::Text(t) => Some(t.text.as_str()),
                    _ => None,
                })
                .collect();
            assert!(
                footer.contains(&format!("第 {} 页，共 {n} 页", i + 1)),
                "{footer}"
            );
        }
    }

    #[test]
    fn a_table_row_is_never_split_across_pages() {
        // Filler pushes the table to the end of page 1; each row is one repeated hanzi,
        // long enough to wrap over several lines.
        let mut src = String::from("@footer 第 {page} 页\n");
        for _ in 0..26 {
            src.push_str("租赁期限自起至止。\n\n");
        }
        src.push_str("@table 1fr 1fr\n");
        let marks = "甲乙丙丁戊己庚辛壬癸";
        for c in marks.chars() {
            src.push_str(&format!("| {} | 房 |\n", c.to_string().repeat(60)));
        }
        let t = Template::parse(&src).unwrap();
        let laid = layout(&t, &Fields::new(), None).unwrap();
        assert!(laid.pages.len() >= 2);
        check_margins(&laid);
        for c in marks.chars() {
            let pages: std::collections::BTreeSet<usize> = laid
                .pages
                .iter()
                .enumerate()
                .filter(|(_, p)| texts(p).any(|t| t.text.contains(c)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(pages.len(), 1, "row {c} is on pages {pages:?}");
        }
    }

    #[test]
    fn the_signature_keeps_its_proportions_inside_its_box() {
        let laid = lease("王小明", true);
        let image = laid
            .pages
            .iter()
            .flat_map(|p| &p.body)
            .find_map(|i| match i {
                Item::Image { w, h, .. } => Some((*w, *h)),
                _ => None,
            })
            .expect("the signature is drawn");
        assert!((image.0 / image.1 - 3.0).abs() < 1e-3, "{image:?}");
        assert!((image.1 - 2.2 * 72.0 / 2.54).abs() < 0.01);
        // A very wide signature is scaled down to the column.
        let t = Template::parse(crate::LEASE_TEMPLATE).unwrap();
        let fields = crate::lease_fields(&sample::lease("王小明"));
        check_margins(&layout(&t, &fields, Some((4000, 10))).unwrap());
    }
}
