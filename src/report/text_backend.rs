//! The bitmap backend the pictures draw on, with its text drawn here. plotters 0.3.7 draws
//! each glyph of the embedded font at a whole-pixel pen position and without the glyph's
//! left side bearing, so "Spearman" came out as "Sp earman" and "0.867" as "0 .867". Every
//! other primitive goes to plotters' own `BitMapBackend`.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::backend::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind};

/// The embedded font, as plotters registers it (`plots::register_font`).
pub const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses"))
}

/// The characters of `texts` the embedded font has no glyph for (drawn as boxes), each once.
pub fn undrawable_chars<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<char> {
    let mut missing: Vec<char> = Vec::new();
    for c in texts.into_iter().flat_map(str::chars) {
        if !c.is_whitespace() && font().glyph_id(c).0 == 0 && !missing.contains(&c) {
            missing.push(c);
        }
    }
    missing
}

/// Coverage (0 to 1) of every pixel of `text` at `size` px, at positions relative to the
/// text's top left, in plotters' vertical layout (baseline at half the size).
fn rasterize(text: &str, size: f32, mut put: impl FnMut(i32, i32, f32)) {
    let font = font().as_scaled(size);
    let mut pen = 0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = previous {
            pen += font.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(size, ab_glyph::point(pen, 0.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            let (left, top) = (bounds.min.x as i32, (size / 2.0 + bounds.min.y) as i32);
            outline.draw(|x, y, coverage| put(left + x as i32, top + y as i32, coverage));
        }
        pen += font.h_advance(id);
    }
}

/// plotters' `BitMapBackend`, drawing text with [`rasterize`].
pub struct TextBackend<'a>(pub BitMapBackend<'a>);

type Failure<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for TextBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Failure<'a>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Failure<'a>> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Failure<'a>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Failure<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Failure<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vertices: I,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.0.fill_polygon(vertices, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), Failure<'a>> {
        self.0.blit_bitmap(pos, size, src)
    }

    /// plotters' own placement (anchor, rotation, clipping to the canvas) around [`rasterize`].
    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> Result<(), Failure<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) =
            style.layout_box(text).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        rasterize(text, style.size() as f32, |x, y, coverage| {
            let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if result.is_ok() && x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                result = self.0.draw_pixel((x, y), color.mix(coverage as f64));
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_is_not_drawable_and_latin_greek_cyrillic_are() {
        assert_eq!(undrawable_chars(["positive", "négatif", "Ωμέγα", "русский", "a b"]), Vec::<char>::new());
        assert_eq!(undrawable_chars(["正面", "负面", "正"]), vec!['正', '面', '负']);
    }

    /// Where plotters drew a glyph's ink from the pen position, it starts a side bearing to
    /// its right; and a second glyph starts one advance (and kerning) after the first.
    #[test]
    fn glyphs_keep_their_side_bearing_and_advance() {
        let font = font().as_scaled(40.0);
        let (l, o) = (font.glyph_id('l'), font.glyph_id('o'));
        let first_ink = |text: &str| {
            let mut left = i32::MAX;
            rasterize(text, 40.0, |x, _, coverage| {
                if coverage > 0.0 {
                    left = left.min(x)
                }
            });
            left
        };
        let bearing = font.h_side_bearing(l);
        assert!(bearing >= 2.0, "the test needs a visible bearing: {bearing}");
        assert_eq!(first_ink("l"), bearing.floor() as i32);
        let mut o_ink = i32::MAX;
        let o_start = font.h_advance(l) + font.kern(l, o) + font.h_side_bearing(o);
        rasterize("lo", 40.0, |x, _, coverage| {
            if coverage > 0.0 && x as f32 > font.h_advance(l) - 1.0 {
                o_ink = o_ink.min(x)
            }
        });
        assert_eq!(o_ink, o_start.floor() as i32);
    }
}
