//! Who is shown where on an MCU room's composite. Pure: no GStreamer.
//!
//! A room has a layout (grid, speaker or custom, and an optional pin), set
//! with `PUT /api/rooms/{room}/layout`. From it, who is in
//! the room and who spoke last, `arrange` decides each visible
//! participant's tile in canvas pixels; the media moves its compositor pads
//! there and everyone is sent the same tiles as shares of the canvas.
//!
//! Who is visible when not everyone fits (`max_visible`, or a custom
//! layout's slots): the pinned participant, then the dominant speaker, the
//! active ones and those who spoke most recently, then the rest in join
//! order. Visible tiles other than the main one are shown in join order, so
//! a speaker switch does not reshuffle the strip.

pub use crate::media::layout::Placement;
use crate::media::layout::{GridLayout, Rect, SpeakerLayout};
use crate::media::speakers::Speakers;
use crate::protocol::{Fraction, LayoutKind, LayoutTile};
use serde::Deserialize;
use std::fmt;

/// Most tiles a custom layout may have.
pub const MAX_CUSTOM_TILES: usize = 64;
/// Highest z a custom tile may have.
pub const MAX_Z: u32 = 100;

/// A custom layout's slot, in shares of the canvas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<K> {
    pub x: Fraction,
    pub y: Fraction,
    pub width: Fraction,
    pub height: Fraction,
    pub z: u32,
    /// Who the slot shows; none: the next speaker not shown elsewhere.
    pub participant: Option<K>,
}

/// A room's layout as its admin set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSpec<K> {
    pub kind: LayoutKind,
    /// Custom layouts only.
    pub slots: Vec<Slot<K>>,
    pub pin: Option<K>,
    /// Whether recordings get each tile's name drawn on it by the server
    /// (the call's own composite never does: clients draw names).
    pub captions: bool,
}

impl<K> Default for LayoutSpec<K> {
    fn default() -> Self {
        LayoutSpec {
            kind: LayoutKind::Grid,
            slots: Vec::new(),
            pin: None,
            captions: true,
        }
    }
}

impl<K: Clone> LayoutSpec<K> {
    /// The same layout with participants named another way.
    pub fn map<L>(&self, f: impl Fn(&K) -> Result<L, String>) -> Result<LayoutSpec<L>, String> {
        Ok(LayoutSpec {
            kind: self.kind,
            slots: self
                .slots
                .iter()
                .map(|s| {
                    Ok(Slot {
                        x: s.x,
                        y: s.y,
                        width: s.width,
                        height: s.height,
                        z: s.z,
                        participant: s.participant.as_ref().map(&f).transpose()?,
                    })
                })
                .collect::<Result<_, String>>()?,
            pin: self.pin.as_ref().map(&f).transpose()?,
            captions: self.captions,
        })
    }
}

/// Why a layout request was refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    pub code: LayoutErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutErrorCode {
    /// The body is not a JSON object.
    BadJson,
    /// The JSON does not describe a layout (unknown kind or field, a tile
    /// off the canvas, tiles for a layout other than custom).
    BadLayout,
    /// The pin or a custom tile names someone not in the room.
    UnknownParticipant,
    /// No room of that id is open.
    UnknownRoom,
    /// The room has no composite (an SFU or mesh room).
    NotComposited,
    /// The server failed while handling a valid request.
    Internal,
}

impl LayoutErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutErrorCode::BadJson => "bad-json",
            LayoutErrorCode::BadLayout => "bad-layout",
            LayoutErrorCode::UnknownParticipant => "unknown-participant",
            LayoutErrorCode::UnknownRoom => "unknown-room",
            LayoutErrorCode::NotComposited => "not-composited",
            LayoutErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            LayoutErrorCode::BadJson | LayoutErrorCode::BadLayout => 400,
            LayoutErrorCode::UnknownParticipant | LayoutErrorCode::UnknownRoom => 404,
            LayoutErrorCode::NotComposited => 409,
            LayoutErrorCode::Internal => 500,
        }
    }
}

impl LayoutError {
    pub fn new(code: LayoutErrorCode, message: impl Into<String>) -> Self {
        LayoutError {
            code,
            message: message.into(),
        }
    }
}

/// Why a room without a composite has no layout.
pub fn not_composited(mode: crate::protocol::Mode) -> LayoutError {
    LayoutError::new(
        LayoutErrorCode::NotComposited,
        format!("A {mode} room has no composite to lay out: layouts are for MCU rooms."),
    )
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutRequest {
    layout: LayoutKind,
    #[serde(default)]
    pin: Option<String>,
    /// A PUT replaces the whole layout: left out, captions are on.
    #[serde(default = "captions_by_default")]
    captions: bool,
    #[serde(default)]
    tiles: Option<Vec<SlotRequest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotRequest {
    x: Fraction,
    y: Fraction,
    width: Fraction,
    height: Fraction,
    #[serde(default)]
    z: u32,
    #[serde(default)]
    participant: Option<String>,
}

fn captions_by_default() -> bool {
    true
}

fn bad_layout(message: impl Into<String>) -> LayoutError {
    LayoutError::new(LayoutErrorCode::BadLayout, message)
}

/// Reads a `PUT /api/rooms/{room}/layout` body. Participants are checked
/// against the room later, by the room.
pub fn parse_layout_request(body: &[u8]) -> Result<LayoutSpec<String>, LayoutError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        LayoutError::new(
            LayoutErrorCode::BadJson,
            format!("The body is not JSON: {e}."),
        )
    })?;
    if !value.is_object() {
        return Err(LayoutError::new(
            LayoutErrorCode::BadJson,
            "The body must be a JSON object.",
        ));
    }
    let request: LayoutRequest = serde_json::from_value(value).map_err(|e| {
        bad_layout(format!(
            "Not a layout ({e}): send {{\"layout\":\"grid\"|\"speaker\"|\"custom\",\"pin\":id|null,\"captions\":bool,\"tiles\":[...]}}."
        ))
    })?;
    let slots = match (request.layout, request.tiles) {
        (LayoutKind::Custom, Some(tiles)) => custom_slots(tiles)?,
        (LayoutKind::Custom, None) => {
            return Err(bad_layout("A custom layout needs \"tiles\"."));
        }
        (_, Some(_)) => {
            return Err(bad_layout(
                "Only a custom layout has \"tiles\"; grid and speaker place tiles themselves.",
            ));
        }
        (_, None) => Vec::new(),
    };
    Ok(LayoutSpec {
        kind: request.layout,
        slots,
        pin: request.pin,
        captions: request.captions,
    })
}

fn custom_slots(tiles: Vec<SlotRequest>) -> Result<Vec<Slot<String>>, LayoutError> {
    if tiles.is_empty() || tiles.len() > MAX_CUSTOM_TILES {
        return Err(bad_layout(format!(
            "A custom layout has 1 to {MAX_CUSTOM_TILES} tiles."
        )));
    }
    tiles
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let fits = |start: Fraction, size: Fraction| {
                size > Fraction::default() && start.as_f64() + size.as_f64() <= 1.0 + 1e-9
            };
            if !fits(t.x, t.width) || !fits(t.y, t.height) {
                return Err(bad_layout(format!(
                    "Tile {i} is not on the canvas: x + width and y + height must be at most 1, width and height above 0."
                )));
            }
            if t.z > MAX_Z {
                return Err(bad_layout(format!("Tile {i}: z is 0 to {MAX_Z}.")));
            }
            Ok(Slot {
                x: t.x,
                y: t.y,
                width: t.width,
                height: t.height,
                z: t.z,
                participant: t.participant,
            })
        })
        .collect()
}

/// Who spoke most recently, most recent first: the order in which
/// participants earn a visible tile.
#[derive(Debug, Clone)]
pub struct SpeakerOrder<K> {
    recent: Vec<K>,
}

impl<K> Default for SpeakerOrder<K> {
    fn default() -> Self {
        SpeakerOrder { recent: Vec::new() }
    }
}

impl<K: Clone + PartialEq> SpeakerOrder<K> {
    /// Those speaking now move to the front, the dominant one first.
    pub fn heard(&mut self, speakers: &Speakers<K>) {
        let now: Vec<&K> = speakers
            .dominant
            .iter()
            .chain(speakers.active.iter().rev())
            .collect();
        for k in now.into_iter().rev() {
            self.recent.retain(|r| r != k);
            self.recent.insert(0, k.clone());
        }
    }

    pub fn forget(&mut self, k: &K) {
        self.recent.retain(|r| r != k);
    }

    /// Everyone in `joined`, most deserving of a tile first: the pin, the
    /// most recent speakers, then the rest in join order.
    pub fn precedence(&self, pin: Option<&K>, joined: &[K]) -> Vec<K> {
        let mut order: Vec<K> = Vec::with_capacity(joined.len());
        let candidates = pin.into_iter().chain(&self.recent).chain(joined);
        for k in candidates {
            if joined.contains(k) && !order.contains(k) {
                order.push(k.clone());
            }
        }
        order
    }
}

/// The tiles of everyone visible. `joined` in join order, `precedence`
/// from `SpeakerOrder::precedence`; at most `max_visible` tiles.
pub fn arrange<K: Clone + PartialEq>(
    spec: &LayoutSpec<K>,
    joined: &[K],
    precedence: &[K],
    canvas: (u32, u32),
    max_visible: usize,
) -> Vec<Placement<K>> {
    let max_visible = max_visible.max(1);
    let (width, height) = canvas;
    let place = |participant: &K, rect: Rect, z: u32, main: bool| Placement {
        participant: participant.clone(),
        rect,
        z,
        main,
    };
    match spec.kind {
        LayoutKind::Grid => {
            let shown: Vec<&K> = precedence.iter().take(max_visible).collect();
            // The pin first, the others in join order.
            let pinned = spec.pin.as_ref().filter(|p| shown.contains(p));
            let ordered: Vec<&K> = pinned
                .into_iter()
                .chain(
                    joined
                        .iter()
                        .filter(|k| shown.contains(k) && Some(*k) != pinned),
                )
                .collect();
            let grid = GridLayout::for_count(ordered.len(), width, height);
            ordered
                .into_iter()
                .zip(grid.tiles)
                .map(|(k, rect)| place(k, rect, 1, pinned == Some(k)))
                .collect()
        }
        LayoutKind::Speaker => {
            let Some(main) = precedence.first() else {
                return Vec::new();
            };
            let others: Vec<&K> = precedence[1..].iter().take(max_visible - 1).collect();
            let strip: Vec<&K> = joined.iter().filter(|k| others.contains(k)).collect();
            let layout = SpeakerLayout::for_others(strip.len(), width, height);
            std::iter::once(place(main, layout.main, 1, true))
                .chain(
                    strip
                        .into_iter()
                        .zip(layout.strip)
                        .map(|(k, rect)| place(k, rect, 2, false)),
                )
                .collect()
        }
        LayoutKind::Custom => {
            let fixed: Vec<&K> = spec
                .slots
                .iter()
                .filter_map(|s| s.participant.as_ref())
                .collect();
            let mut next = precedence.iter().filter(|k| !fixed.contains(k));
            let mut placements = Vec::new();
            for slot in &spec.slots {
                if placements.len() == max_visible {
                    break;
                }
                let who = match &slot.participant {
                    Some(k) => joined.contains(k).then_some(k),
                    None => next.next(),
                };
                if let Some(k) = who {
                    let main = spec.pin.as_ref() == Some(k);
                    placements.push(place(k, slot_rect(slot, width, height), slot.z, main));
                }
            }
            placements
        }
    }
}

/// A slot's rectangle in pixels, on even coordinates (chroma subsampling).
fn slot_rect<K>(slot: &Slot<K>, width: u32, height: u32) -> Rect {
    let px =
        |share: Fraction, whole: u32| ((share.as_f64() * f64::from(whole)).round() as i32) & !1;
    Rect {
        x: px(slot.x, width),
        y: px(slot.y, height),
        width: px(slot.width, width).max(2),
        height: px(slot.height, height).max(2),
    }
}

/// The tiles as a client is sent them: shares of the canvas.
pub fn tiles_message<K: fmt::Display>(
    placements: &[Placement<K>],
    canvas: (u32, u32),
) -> Vec<LayoutTile> {
    let (width, height) = canvas;
    placements
        .iter()
        .map(|p| LayoutTile {
            participant: p.participant.to_string(),
            x: Fraction::of(p.rect.x, width),
            y: Fraction::of(p.rect.y, height),
            width: Fraction::of(p.rect.width, width),
            height: Fraction::of(p.rect.height, height),
            z: p.z,
            main: p.main,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANVAS: (u32, u32) = (1280, 720);

    fn spec(kind: LayoutKind, pin: Option<&'static str>) -> LayoutSpec<&'static str> {
        LayoutSpec {
            kind,
            pin,
            ..LayoutSpec::default()
        }
    }

    fn shown(placements: &[Placement<&'static str>]) -> Vec<&'static str> {
        placements.iter().map(|p| p.participant).collect()
    }

    /// Everyone's tiles under `layout`, up to 16, in `order`.
    fn arranged(
        layout: &LayoutSpec<&'static str>,
        joined: &[&'static str],
        order: &SpeakerOrder<&'static str>,
    ) -> Vec<Placement<&'static str>> {
        let precedence = order.precedence(layout.pin.as_ref(), joined);
        arrange(layout, joined, &precedence, CANVAS, 16)
    }

    fn main_of(placements: &[Placement<&'static str>]) -> Option<&'static str> {
        placements.iter().find(|p| p.main).map(|p| p.participant)
    }

    fn speaking(active: &[&'static str], dominant: Option<&'static str>) -> Speakers<&'static str> {
        Speakers {
            active: active.to_vec(),
            dominant,
        }
    }

    #[test]
    fn the_grid_shows_everyone_in_join_order_with_a_pin_first() {
        let joined = ["a", "b", "c"];
        let order = SpeakerOrder::default();
        let grid = spec(LayoutKind::Grid, None);
        let tiles = arranged(&grid, &joined, &order);
        assert_eq!(shown(&tiles), ["a", "b", "c"]);
        assert_eq!(tiles[0].rect, GridLayout::for_count(3, 1280, 720).tiles[0]);
        assert_eq!(main_of(&tiles), None);

        let pinned = spec(LayoutKind::Grid, Some("c"));
        let tiles = arranged(&pinned, &joined, &order);
        assert_eq!(shown(&tiles), ["c", "a", "b"]);
        assert_eq!(main_of(&tiles), Some("c"));
    }

    #[test]
    fn the_speaker_layout_puts_the_dominant_speaker_large_and_a_pin_before_it() {
        let joined = ["a", "b", "c", "d"];
        let mut order = SpeakerOrder::default();
        order.heard(&speaking(&["c"], Some("c")));
        let layout = spec(LayoutKind::Speaker, None);
        let tiles = arranged(&layout, &joined, &order);
        assert_eq!(main_of(&tiles), Some("c"));
        let expected = SpeakerLayout::for_others(3, 1280, 720);
        assert_eq!(tiles[0].rect, expected.main);
        // The strip in join order, not speaking order.
        assert_eq!(shown(&tiles), ["c", "a", "b", "d"]);
        assert_eq!(tiles[1].rect, expected.strip[0]);

        let pinned = spec(LayoutKind::Speaker, Some("a"));
        let tiles = arranged(&pinned, &joined, &order);
        assert_eq!(main_of(&tiles), Some("a"), "the pin holds the main tile");
        assert_eq!(shown(&tiles), ["a", "b", "c", "d"]);
    }

    #[test]
    fn before_anyone_speaks_the_first_to_join_is_large() {
        let joined = ["a", "b"];
        let tiles = arrange(
            &spec(LayoutKind::Speaker, None),
            &joined,
            &SpeakerOrder::default().precedence(None, &joined),
            CANVAS,
            16,
        );
        assert_eq!(main_of(&tiles), Some("a"));
        assert!(arrange(&spec(LayoutKind::Speaker, None), &[], &[], CANVAS, 16).is_empty());
    }

    #[test]
    fn when_not_everyone_fits_the_recent_speakers_are_shown() {
        let joined = ["a", "b", "c", "d", "e"];
        let mut order = SpeakerOrder::default();
        order.heard(&speaking(&["d"], Some("d")));
        order.heard(&speaking(&["e"], Some("e")));
        let precedence = order.precedence(None, &joined);
        assert_eq!(precedence, ["e", "d", "a", "b", "c"]);
        let three_of = |kind| shown(&arrange(&spec(kind, None), &joined, &precedence, CANVAS, 3));
        assert_eq!(three_of(LayoutKind::Grid), ["a", "d", "e"]);
        assert_eq!(three_of(LayoutKind::Speaker), ["e", "a", "d"]);
        // A leaver is forgotten.
        order.forget(&"e");
        assert_eq!(order.precedence(None, &joined[..4]), ["d", "a", "b", "c"]);
    }

    #[test]
    fn the_active_speakers_come_after_the_dominant_one_in_the_order_they_began() {
        let mut order = SpeakerOrder::default();
        order.heard(&speaking(&["a"], Some("a")));
        order.heard(&speaking(&["b", "c"], Some("c")));
        assert_eq!(
            order.precedence(None, &["a", "b", "c", "d"]),
            ["c", "b", "a", "d"]
        );
    }

    #[test]
    fn custom_slots_hold_their_participant_and_the_others_fill_with_speakers() {
        let slot = |x: f64, participant: Option<&'static str>| Slot {
            x: Fraction::from_f64(x),
            y: Fraction::from_f64(0.0),
            width: Fraction::from_f64(0.25),
            height: Fraction::from_f64(0.5),
            z: 3,
            participant,
        };
        let layout = LayoutSpec {
            kind: LayoutKind::Custom,
            slots: vec![
                slot(0.0, Some("b")),
                slot(0.25, None),
                slot(0.5, None),
                slot(0.75, Some("gone")),
            ],
            ..LayoutSpec::default()
        };
        let joined = ["a", "b", "c"];
        let mut order = SpeakerOrder::default();
        order.heard(&speaking(&["b", "c"], Some("b")));
        let tiles = arranged(&layout, &joined, &order);
        // b is fixed in slot 0, so the speaker slots get c, then a; the
        // slot for someone not here stays empty.
        assert_eq!(shown(&tiles), ["b", "c", "a"]);
        assert_eq!(
            tiles[1].rect,
            Rect {
                x: 320,
                y: 0,
                width: 320,
                height: 360
            }
        );
        assert_eq!(tiles[1].z, 3);
    }

    #[test]
    fn tiles_are_sent_as_shares_of_the_canvas() {
        let placements = [Placement {
            participant: "a",
            rect: Rect {
                x: 160,
                y: 0,
                width: 960,
                height: 540,
            },
            z: 1,
            main: true,
        }];
        let tiles = tiles_message(&placements, CANVAS);
        assert_eq!(tiles[0].x.as_f64(), 0.125);
        assert_eq!(tiles[0].width.as_f64(), 0.75);
        assert_eq!(tiles[0].height.as_f64(), 0.75);
        assert!(tiles[0].main);
    }

    #[test]
    fn layout_requests_are_read_and_bad_ones_refused_with_a_reason() {
        let grid = parse_layout_request(br#"{"layout":"grid"}"#).unwrap();
        assert_eq!(grid, LayoutSpec::default());
        let speaker =
            parse_layout_request(br#"{"layout":"speaker","pin":"p1","captions":false}"#).unwrap();
        assert_eq!(speaker.kind, LayoutKind::Speaker);
        assert_eq!(speaker.pin.as_deref(), Some("p1"));
        assert!(!speaker.captions);
        assert!(grid.captions, "captions are on unless turned off");
        let custom = parse_layout_request(
            br#"{"layout":"custom","tiles":[{"x":0,"y":0,"width":1,"height":1},{"x":0.75,"y":0.75,"width":0.25,"height":0.25,"z":2,"participant":"p2"}]}"#,
        )
        .unwrap();
        assert_eq!(custom.slots.len(), 2);
        assert_eq!(custom.slots[1].participant.as_deref(), Some("p2"));

        let refused = |body: &str| parse_layout_request(body.as_bytes()).unwrap_err().code;
        assert_eq!(refused("not json"), LayoutErrorCode::BadJson);
        assert_eq!(refused("[1]"), LayoutErrorCode::BadJson);
        for bad in [
            r#"{"layout":"mosaic"}"#,
            r#"{"layout":"grid","colour":"red"}"#,
            r#"{"layout":"grid","tiles":[]}"#,
            r#"{"layout":"custom"}"#,
            r#"{"layout":"custom","tiles":[]}"#,
            r#"{"layout":"custom","tiles":[{"x":0.5,"y":0,"width":0.6,"height":1}]}"#,
            r#"{"layout":"custom","tiles":[{"x":0,"y":0,"width":0,"height":1}]}"#,
            r#"{"layout":"custom","tiles":[{"x":-1,"y":0,"width":0.5,"height":1}]}"#,
            r#"{"layout":"custom","tiles":[{"x":0,"y":0,"width":0.5,"height":1,"z":101}]}"#,
            r#"{"layout":"grid","captions":"yes"}"#,
        ] {
            assert_eq!(refused(bad), LayoutErrorCode::BadLayout, "{bad}");
        }
        let many = format!(
            r#"{{"layout":"custom","tiles":[{}]}}"#,
            vec![r#"{"x":0,"y":0,"width":0.1,"height":0.1}"#; MAX_CUSTOM_TILES + 1].join(",")
        );
        assert_eq!(refused(&many), LayoutErrorCode::BadLayout);
    }
}
