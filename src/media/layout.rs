//! Tile math for the MCU composite (the grid, the speaker layout). Pure: no
//! GStreamer.
//!
//! Tiles keep the tiles' aspect ratio (16:9 by default) and are as large as
//! possible on the canvas; the grid is centred, and an incomplete last row is
//! centred too so the picture stays balanced.

/// A rectangle on the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// One visible participant's tile, in canvas pixels: where the room's
/// layout (room/layout.rs) puts them, and what the MCU draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<K> {
    pub participant: K,
    pub rect: Rect,
    pub z: u32,
    pub main: bool,
}

impl Rect {
    pub fn centre(&self) -> (i32, i32) {
        (self.x + self.width / 2, self.y + self.height / 2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridLayout {
    pub columns: u32,
    pub rows: u32,
    /// One rectangle per participant, in join order.
    pub tiles: Vec<Rect>,
}

/// The tile aspect ratio gridmix lays out for: the common camera shape.
pub const TILE_ASPECT: (u32, u32) = (16, 9);

impl GridLayout {
    /// The layout for `count` tiles on a `width` x `height` canvas.
    pub fn for_count(count: usize, width: u32, height: u32) -> GridLayout {
        GridLayout::in_region(
            count,
            Rect {
                x: 0,
                y: 0,
                width: width as i32,
                height: height as i32,
            },
        )
    }

    /// The layout for `count` tiles inside `region` of the canvas.
    pub fn in_region(count: usize, region: Rect) -> GridLayout {
        let (width, height) = (region.width.max(0) as u32, region.height.max(0) as u32);
        if count == 0 || width == 0 || height == 0 {
            return GridLayout {
                columns: 0,
                rows: 0,
                tiles: Vec::new(),
            };
        }
        let (aw, ah) = TILE_ASPECT;
        // Pick the column count whose tiles are largest; on a tie prefer more
        // columns (side by side reads better on a landscape canvas).
        let mut best = (0u64, 1u32, 1u32, 0u32, 0u32);
        for columns in 1..=count as u32 {
            let rows = (count as u32).div_ceil(columns);
            let cell_w = width / columns;
            let cell_h = height / rows;
            // Largest aw:ah box that fits the cell.
            let (tw, th) = if u64::from(cell_w) * u64::from(ah) <= u64::from(cell_h) * u64::from(aw)
            {
                (cell_w, cell_w * ah / aw)
            } else {
                (cell_h * aw / ah, cell_h)
            };
            let area = u64::from(tw) * u64::from(th);
            if area >= best.0 {
                best = (area, columns, rows, tw, th);
            }
        }
        let (_, columns, rows, tw, th) = best;
        // Even sizes keep chroma subsampling exact at tile edges.
        let (tw, th) = ((tw & !1) as i32, (th & !1) as i32);
        let top = region.y + (height as i32 - th * rows as i32) / 2;
        let mut tiles = Vec::with_capacity(count);
        for index in 0..count as u32 {
            let row = index / columns;
            let col = index % columns;
            let in_this_row = (count as u32 - row * columns).min(columns) as i32;
            let left = region.x + (width as i32 - tw * in_this_row) / 2;
            tiles.push(Rect {
                x: left + col as i32 * tw,
                y: top + row as i32 * th,
                width: tw,
                height: th,
            });
        }
        GridLayout {
            columns,
            rows,
            tiles,
        }
    }
}

/// The speaker layout: one large tile, the others small in a strip below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerLayout {
    pub main: Rect,
    pub strip: Vec<Rect>,
}

/// The share of the canvas height the main tile gets when others are shown.
const MAIN_SHARE: (i32, i32) = (3, 4);

impl SpeakerLayout {
    /// The main tile and `others` strip tiles on a `width` x `height` canvas:
    /// alone, the main tile is the whole canvas; otherwise it takes the top
    /// three quarters and the others share the bottom quarter as a grid.
    pub fn for_others(others: usize, width: u32, height: u32) -> SpeakerLayout {
        let (width, height) = (width as i32, height as i32);
        let whole = Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        if others == 0 {
            let main = GridLayout::in_region(1, whole).tiles.first().copied();
            return SpeakerLayout {
                main: main.unwrap_or(whole),
                strip: Vec::new(),
            };
        }
        let main_height = height * MAIN_SHARE.0 / MAIN_SHARE.1;
        let top = Rect {
            height: main_height,
            ..whole
        };
        let bottom = Rect {
            y: main_height,
            height: height - main_height,
            ..whole
        };
        SpeakerLayout {
            main: GridLayout::in_region(1, top)
                .tiles
                .first()
                .copied()
                .unwrap_or(top),
            strip: GridLayout::in_region(others, bottom).tiles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: i32, y: i32, width: i32, height: i32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    fn overlaps(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    #[test]
    fn one_tile_fills_the_canvas() {
        let l = GridLayout::for_count(1, 1280, 720);
        assert_eq!(l.tiles, vec![rect(0, 0, 1280, 720)]);
    }

    #[test]
    fn two_tiles_sit_side_by_side_centred_vertically() {
        let l = GridLayout::for_count(2, 1280, 720);
        assert_eq!((l.columns, l.rows), (2, 1));
        assert_eq!(l.tiles[0], rect(0, 180, 640, 360));
        assert_eq!(l.tiles[1], rect(640, 180, 640, 360));
    }

    #[test]
    fn three_tiles_make_a_two_by_two_grid_with_the_last_row_centred() {
        let l = GridLayout::for_count(3, 1280, 720);
        assert_eq!((l.columns, l.rows), (2, 2));
        assert_eq!(l.tiles[0], rect(0, 0, 640, 360));
        assert_eq!(l.tiles[1], rect(640, 0, 640, 360));
        assert_eq!(l.tiles[2], rect(320, 360, 640, 360));
    }

    #[test]
    fn nine_tiles_make_three_by_three() {
        let l = GridLayout::for_count(9, 1280, 720);
        assert_eq!((l.columns, l.rows), (3, 3));
        assert_eq!(l.tiles[8].width, 426);
        assert_eq!(l.tiles[8].height, 238); // 426 * 9 / 16, rounded down to even
    }

    #[test]
    fn tiles_never_overlap_and_stay_on_canvas_for_any_count() {
        for (w, h) in [(1280, 720), (640, 480), (720, 1280), (1920, 1080)] {
            for n in 1..=30 {
                let l = GridLayout::for_count(n, w, h);
                assert_eq!(l.tiles.len(), n);
                assert!(l.columns * l.rows >= n as u32);
                for (i, a) in l.tiles.iter().enumerate() {
                    assert!(a.x >= 0 && a.y >= 0, "{n} tiles on {w}x{h}: {a:?}");
                    assert!(a.x + a.width <= w as i32 && a.y + a.height <= h as i32);
                    assert!(a.width > 0 && a.height > 0);
                    // Aspect ratio kept within rounding.
                    let ratio = a.width as f64 / a.height as f64;
                    assert!((ratio - 16.0 / 9.0).abs() < 0.05, "{a:?}");
                    for b in &l.tiles[i + 1..] {
                        assert!(!overlaps(a, b), "{a:?} overlaps {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_speaker_sits_large_above_a_strip_of_the_others() {
        let l = SpeakerLayout::for_others(3, 1280, 720);
        assert_eq!(l.main, rect(160, 0, 960, 540));
        assert_eq!(l.strip.len(), 3);
        for tile in &l.strip {
            assert_eq!((tile.y, tile.width, tile.height), (540, 320, 180));
        }
        // Centred: 3 x 320 = 960 wide, starting at 160.
        assert_eq!(l.strip[0].x, 160);
        assert_eq!(
            SpeakerLayout::for_others(0, 1280, 720).main,
            rect(0, 0, 1280, 720)
        );
    }

    #[test]
    fn a_strip_of_many_stays_below_the_main_tile_without_overlap() {
        for others in 1..=49 {
            let l = SpeakerLayout::for_others(others, 1280, 720);
            assert_eq!(l.strip.len(), others);
            for (i, a) in l.strip.iter().enumerate() {
                assert!(a.y >= l.main.y + l.main.height, "{others}: {a:?}");
                assert!(a.y + a.height <= 720 && a.x >= 0 && a.x + a.width <= 1280);
                assert!(a.width > 0 && a.height > 0, "{others}: {a:?}");
                for b in &l.strip[i + 1..] {
                    assert!(!overlaps(a, b), "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn empty_room_or_canvas_has_no_tiles() {
        assert!(GridLayout::for_count(0, 1280, 720).tiles.is_empty());
        assert!(GridLayout::for_count(3, 0, 720).tiles.is_empty());
    }
}
