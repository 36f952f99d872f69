//! What the server writes on a recorded composite's tiles, and where: each
//! shown participant's name, centred near the bottom edge of their tile,
//! sized to the tile and cut to fit it. Pure: no GStreamer (media/captions.rs
//! draws them).

use crate::media::layout::Rect;

/// A participant's tile with the name to write on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedTile<'a> {
    pub name: &'a str,
    pub rect: Rect,
    /// Higher is drawn over lower (custom layouts may overlap tiles).
    pub z: u32,
}

/// One name to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// Pango markup: the name as written, never read as markup itself.
    pub markup: String,
    /// The text's centre, in shares of the canvas.
    pub x: f64,
    pub y: f64,
    /// The font's size in pixels.
    pub font_px: u32,
}

/// Smallest and largest letters drawn, in pixels: smaller is unreadable in
/// a recording, larger covers the picture.
const MIN_FONT_PX: i32 = 10;
const MAX_FONT_PX: i32 = 22;
/// A tile gets letters this many times smaller than its height.
const TILE_HEIGHTS_PER_FONT: i32 = 12;
/// Tiles lower than this get no caption: on them even the smallest letters
/// would reach the middle of the picture.
const MIN_TILE_HEIGHT: i32 = 6 * MIN_FONT_PX;
/// An average letter of a sans font is about this share of its size wide.
const LETTER_WIDTH: f64 = 0.62;

/// The captions for `tiles` on a canvas of `canvas` pixels, in tile order.
/// A tile too small for a readable name, or whose caption would sit under
/// a higher tile, gets none.
pub fn captions(tiles: &[NamedTile], canvas: (u32, u32)) -> Vec<Caption> {
    let (width, height) = (f64::from(canvas.0.max(1)), f64::from(canvas.1.max(1)));
    tiles
        .iter()
        .filter_map(|tile| {
            let rect = tile.rect;
            let font_px = (rect.height / TILE_HEIGHTS_PER_FONT).clamp(MIN_FONT_PX, MAX_FONT_PX);
            if rect.height < MIN_TILE_HEIGHT {
                return None;
            }
            let text = fitted(tile.name, rect.width, font_px)?;
            let x = rect.x + rect.width / 2;
            let y = rect.y + rect.height - font_px;
            let covered = tiles
                .iter()
                .any(|other| other.z > tile.z && contains(other.rect, x, y));
            if covered {
                return None;
            }
            Some(Caption {
                markup: escape_markup(&text),
                x: (f64::from(x) / width).clamp(0.0, 1.0),
                y: (f64::from(y) / height).clamp(0.0, 1.0),
                font_px: font_px as u32,
            })
        })
        .collect()
}

/// `name` as it fits `width` pixels at `font_px`: whole, or cut with an
/// ellipsis; none if not even two letters fit (or the name is blank).
fn fitted(name: &str, width: i32, font_px: i32) -> Option<String> {
    let name = name.trim();
    let room = (f64::from(width - font_px) / (f64::from(font_px) * LETTER_WIDTH)).floor();
    let room = if room < 2.0 {
        return None;
    } else {
        room as usize
    };
    if name.is_empty() {
        return None;
    }
    if name.chars().count() <= room {
        return Some(name.to_owned());
    }
    let mut cut: String = name.chars().take(room - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    Some(cut)
}

fn contains(rect: Rect, x: i32, y: i32) -> bool {
    x >= rect.x && x < rect.x + rect.width && y >= rect.y && y < rect.y + rect.height
}

/// Pango markup for `text` shown as it is.
fn escape_markup(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // Control characters would only draw boxes.
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANVAS: (u32, u32) = (1280, 720);

    fn tile(name: &str, x: i32, y: i32, width: i32, height: i32, z: u32) -> NamedTile<'_> {
        NamedTile {
            name,
            rect: Rect {
                x,
                y,
                width,
                height,
            },
            z,
        }
    }

    #[test]
    fn a_name_sits_centred_near_the_bottom_of_its_tile() {
        let shown = captions(&[tile("Ada", 0, 0, 640, 360, 1)], CANVAS);
        assert_eq!(shown.len(), 1);
        let caption = &shown[0];
        assert_eq!(caption.markup, "Ada");
        assert_eq!(caption.font_px, 22);
        assert!((caption.x - 0.25).abs() < 1e-9, "{caption:?}");
        // 338 px down: one letter's height above the tile's bottom edge.
        assert!((caption.y - 338.0 / 720.0).abs() < 1e-9, "{caption:?}");
    }

    #[test]
    fn small_tiles_get_small_letters_and_tiny_ones_none() {
        let shown = captions(
            &[
                tile("Bo", 0, 0, 320, 180, 1),
                tile("Cy", 0, 200, 80, 45, 1),
                tile("Di", 0, 300, 120, 60, 1),
            ],
            CANVAS,
        );
        let sizes: Vec<u32> = shown.iter().map(|c| c.font_px).collect();
        assert_eq!(sizes, [15, 10]);
    }

    #[test]
    fn a_long_name_is_cut_to_its_tile_with_an_ellipsis() {
        let shown = captions(
            &[tile("Maximiliane Bartholomew-Smith", 0, 0, 80, 60, 1)],
            CANVAS,
        );
        assert_eq!(shown[0].markup, "Maximilian…");
        let whole = captions(&[tile("Maximiliane", 0, 0, 640, 360, 1)], CANVAS);
        assert_eq!(whole[0].markup, "Maximiliane");
    }

    #[test]
    fn names_are_shown_as_written_not_read_as_markup() {
        let shown = captions(&[tile("<b>Ann</b> & \"Bo\"\n", 0, 0, 1280, 720, 1)], CANVAS);
        assert_eq!(
            shown[0].markup,
            "&lt;b&gt;Ann&lt;/b&gt; &amp; &quot;Bo&quot;"
        );
    }

    #[test]
    fn a_blank_name_and_a_caption_under_a_higher_tile_are_left_out() {
        let shown = captions(
            &[
                tile("  ", 0, 0, 640, 360, 1),
                // Its caption's spot is under the picture-in-picture tile.
                tile("Main", 0, 0, 1280, 720, 1),
                tile("Inset", 480, 540, 320, 180, 2),
            ],
            CANVAS,
        );
        let names: Vec<&str> = shown.iter().map(|c| c.markup.as_str()).collect();
        assert_eq!(names, ["Inset"]);
    }
}
