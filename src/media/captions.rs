//! Names drawn by the server on the MCU composite's tiles, for those who
//! see the composite without a client to draw them (recordings, players):
//! a fixed row of `textoverlay`s between the compositor and the encoder,
//! one per visible tile, each moved onto its tile's bottom edge. A silent
//! overlay passes frames through untouched; a shown one blends only its
//! text, rendered again only when the name changes.

use crate::media::layout::Rect;
use anyhow::Result;
use gst::prelude::*;

/// Room between a caption's centre and its tile's bottom edge, in pixels:
/// about half the height of the text.
const ABOVE_BOTTOM: i32 = 16;

/// `count` overlays, named caption-0 and on, all silent, to be linked in a
/// row into the composite's chain.
pub fn caption_overlays(count: usize) -> Result<Vec<gst::Element>> {
    (0..count)
        .map(|i| {
            Ok(gst::ElementFactory::make("textoverlay")
                .name(format!("caption-{i}"))
                .property("silent", true)
                .property("wait-text", false)
                .property("auto-resize", false)
                .property("shaded-background", true)
                .property("font-desc", "Sans 13")
                .property_from_str("halignment", "position")
                .property_from_str("valignment", "position")
                .build()?)
        })
        .collect()
}

/// Puts `name` on the bottom edge of `rect`, centred, on a `canvas`.
pub fn show_caption(overlay: &gst::Element, name: &str, rect: Rect, canvas: (u32, u32)) {
    let (width, height) = (f64::from(canvas.0.max(1)), f64::from(canvas.1.max(1)));
    let x = f64::from(rect.x) + f64::from(rect.width) / 2.0;
    let y = f64::from(rect.y + rect.height - ABOVE_BOTTOM.min(rect.height / 2));
    // The text is Pango markup: a name is shown as written, never read as
    // markup.
    overlay.set_property("text", gst::glib::markup_escape_text(name).as_str());
    overlay.set_property("xpos", (x / width).clamp(0.0, 1.0));
    overlay.set_property("ypos", (y / height).clamp(0.0, 1.0));
    overlay.set_property("silent", false);
}

pub fn hide_caption(overlay: &gst::Element) {
    overlay.set_property("silent", true);
}
