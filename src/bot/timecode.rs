//! A time value drawn into video frames as large black and white blocks, and
//! read back from what a receiver decodes: the glass-to-glass latency probe.
//! Pure: no GStreamer.
//!
//! The frame is divided into 8 x 4 blocks, one bit each (white = 1): 20 bits
//! of milliseconds (wrapping every ~17 minutes, far above any latency) and a
//! 12-bit check derived from them. Blocks survive scaling into a grid tile
//! and lossy coding; a read whose blocks are not clearly black or white, or
//! whose check does not match, is rejected rather than counted.

pub const COLUMNS: u32 = 8;
pub const ROWS: u32 = 4;
const TIME_BITS: u32 = 20;
const CHECK_BITS: u32 = 12;
const TIME_MASK: u32 = (1 << TIME_BITS) - 1;
/// Luma written for a 1 and a 0 (video range).
const WHITE: u8 = 235;
const BLACK: u8 = 16;
/// A block whose brightness falls between these is unreadable.
const UNSURE_LOW: f64 = 80.0;
const UNSURE_HIGH: f64 = 170.0;

/// Mixed with the check so that neither an all-black nor an all-white frame
/// (time 0 or all ones, with a check of all zeros or all ones) is a valid code.
const CHECK_SALT: u32 = 0xA5A;

fn check(time: u32) -> u32 {
    ((time.wrapping_mul(0x9E37_79B1) >> (32 - CHECK_BITS)) ^ CHECK_SALT) & ((1 << CHECK_BITS) - 1)
}

/// The 32-bit code for `ms` (only its low 20 bits are kept).
pub fn encode(ms: u32) -> u32 {
    let time = ms & TIME_MASK;
    (time << CHECK_BITS) | check(time)
}

/// The milliseconds in a code, or None when its check does not match.
pub fn decode(code: u32) -> Option<u32> {
    let time = code >> CHECK_BITS;
    (check(time) == code & ((1 << CHECK_BITS) - 1)).then_some(time)
}

/// Milliseconds from `sent` to `now`, both as drawn (20 bits, wrapping).
pub fn elapsed_ms(sent: u32, now: u32) -> u32 {
    now.wrapping_sub(sent) & TIME_MASK
}

/// Block (column, row) of bit `i`, most significant bit first, row by row.
fn block_of(i: u32) -> (u32, u32) {
    (i % COLUMNS, i / COLUMNS)
}

/// Draws the code of `ms` over a whole luma plane (`stride` bytes per row).
pub fn draw(luma: &mut [u8], width: u32, height: u32, stride: usize, ms: u32) {
    let code = encode(ms);
    for i in 0..COLUMNS * ROWS {
        let bit = code >> (COLUMNS * ROWS - 1 - i) & 1 == 1;
        let (col, row) = block_of(i);
        let (x0, x1) = (col * width / COLUMNS, (col + 1) * width / COLUMNS);
        let (y0, y1) = (row * height / ROWS, (row + 1) * height / ROWS);
        for y in y0..y1 {
            let start = y as usize * stride;
            if let Some(line) = luma.get_mut(start + x0 as usize..start + x1 as usize) {
                line.fill(if bit { WHITE } else { BLACK });
            }
        }
    }
}

/// Where a code is drawn in a received frame: the whole frame, or the grid
/// tile it was scaled into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Why a read was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// A block is neither clearly black nor clearly white.
    Unsure,
    /// All blocks are readable but the check bits do not match.
    BadCheck,
}

/// Reads the milliseconds drawn in `region`; `brightness(x, y)` is the mean
/// brightness (0-255) around a pixel of the received frame.
pub fn read(region: Region, brightness: impl Fn(u32, u32) -> f64) -> Result<u32, Rejected> {
    let mut code = 0u32;
    for i in 0..COLUMNS * ROWS {
        let (col, row) = block_of(i);
        // The block's centre: the part least touched by scaling and coding.
        let x = region.x + (2 * col + 1) * region.width / (2 * COLUMNS);
        let y = region.y + (2 * row + 1) * region.height / (2 * ROWS);
        let level = brightness(x, y);
        if (UNSURE_LOW..=UNSURE_HIGH).contains(&level) {
            return Err(Rejected::Unsure);
        }
        code = (code << 1) | u32::from(level > UNSURE_HIGH);
    }
    decode(code).ok_or(Rejected::BadCheck)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, ms: u32) -> Vec<u8> {
        let mut luma = vec![0u8; (width * height) as usize];
        draw(&mut luma, width, height, width as usize, ms);
        luma
    }

    fn region(width: u32, height: u32) -> Region {
        Region {
            x: 0,
            y: 0,
            width,
            height,
        }
    }

    #[test]
    fn codes_round_trip_and_a_flipped_bit_is_caught() {
        for ms in [0, 1, 999, 123_456, TIME_MASK] {
            assert_eq!(decode(encode(ms)), Some(ms));
            for bit in 0..32 {
                assert_eq!(decode(encode(ms) ^ (1 << bit)), None, "ms {ms} bit {bit}");
            }
        }
        assert_eq!(decode(encode(TIME_MASK + 5)), Some(4));
    }

    #[test]
    fn a_drawn_frame_reads_back_at_full_size() {
        let luma = frame(640, 360, 54_321);
        let got = read(region(640, 360), |x, y| {
            f64::from(luma[(y * 640 + x) as usize])
        });
        assert_eq!(got, Ok(54_321));
    }

    #[test]
    fn a_frame_scaled_into_a_small_tile_still_reads() {
        // Nearest-neighbour scale of 640x360 into a 256x144 tile at (300, 200)
        // of a 1280x720 canvas: what a 5x5 grid does to it.
        let luma = frame(640, 360, 777);
        let tile = Region {
            x: 300,
            y: 200,
            width: 256,
            height: 144,
        };
        let got = read(tile, |x, y| {
            let sx = (x - tile.x) * 640 / tile.width;
            let sy = (y - tile.y) * 360 / tile.height;
            f64::from(luma[(sy * 640 + sx) as usize])
        });
        assert_eq!(got, Ok(777));
    }

    #[test]
    fn grey_or_garbled_pictures_are_rejected_not_counted() {
        assert_eq!(read(region(640, 360), |_, _| 128.0), Err(Rejected::Unsure));
        // A solid colour reads as all ones or all zeros, which fails the check.
        assert_eq!(
            read(region(640, 360), |_, _| 250.0),
            Err(Rejected::BadCheck)
        );
        assert_eq!(read(region(640, 360), |_, _| 5.0), Err(Rejected::BadCheck));
    }

    #[test]
    fn elapsed_time_wraps_with_the_code() {
        assert_eq!(elapsed_ms(100, 160), 60);
        assert_eq!(elapsed_ms(TIME_MASK - 9, 20), 30);
    }
}
