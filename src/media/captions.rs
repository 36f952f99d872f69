//! Names drawn by the server on a composite's tiles, for those who watch it
//! without a client that draws them: recordings, and players. On by
//! default; a room's layout can turn them off, and then the browser client
//! draws the names itself over the composite it receives.
//!
//! ```text
//! compositor ─ canvas caps ─ textoverlay × slots ─ video/x-raw ─ raw-tee ─ ...
//! ```
//!
//! A row of `textoverlay`s (one per tile that may be shown) in the
//! composite's own path, each moved onto its tile's bottom edge, so that the
//! names cost no second encode: everyone, recordings included, gets the one
//! composite. A silent overlay hands frames on untouched; a shown one
//! blends only its text, rendered again only when it changes (measured: 16
//! names shown on a 720p stream at 30 fps cost 7.8 % of a core). The caps filter
//! after them is plain system-memory caps: an overlay may otherwise agree
//! with downstream to attach its text as a meta that encoders ignore,
//! instead of drawing it.

use crate::media::caption_spots::Caption;
use anyhow::{Result, anyhow};
use gst::prelude::*;
use std::sync::{Arc, Mutex};

pub struct CaptionRow {
    elements: Vec<gst::Element>,
    /// Captions to draw from the next frame on, for the streaming thread.
    pending: Arc<Mutex<Option<Vec<Caption>>>>,
}

impl CaptionRow {
    /// A row of `slots` overlays named `<prefix>caption-...`, all silent,
    /// for the caller to add and link (`elements`) between the composite's
    /// caps and what takes the composite.
    pub fn new(prefix: &str, slots: usize) -> Result<CaptionRow> {
        let overlays = (0..slots.max(1))
            .map(|i| overlay(&format!("{prefix}caption-{i}")))
            .collect::<Result<Vec<_>>>()?;
        let drawn = gst::ElementFactory::make("capsfilter")
            .name(format!("{prefix}caption-drawn"))
            .property("caps", gst::Caps::new_empty_simple("video/x-raw"))
            .build()?;
        let pending: Arc<Mutex<Option<Vec<Caption>>>> = Arc::default();
        // textoverlay (1.22) renders with its lock released, so a "text" or
        // "font-desc" set from another thread meanwhile changes the Pango
        // layout under it: the bench's 25-person room crashed the server on
        // "attempt to retrieve private data for invalid type 'PangoFont'"
        // a few joins in. Captions are therefore applied on the streaming
        // thread, before a frame enters the row, when no overlay in it is
        // rendering.
        let first_sink = crate::media::pads::static_pad(&overlays[0], "video_sink")?;
        let (applied, row) = (pending.clone(), overlays.clone());
        first_sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let captions = applied.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(captions) = captions {
                apply(&row, &captions);
            }
            gst::PadProbeReturn::Ok
        });
        let elements = overlays.into_iter().chain([drawn]).collect();
        Ok(CaptionRow { elements, pending })
    }

    /// The row's elements in the order they are linked.
    pub fn elements(&self) -> &[gst::Element] {
        &self.elements
    }

    /// Adds the row to `bin` and links it from `upstream` (the composite's
    /// caps) to `downstream` (the tee that takes the composite).
    pub fn insert(
        &self,
        bin: &gst::Pipeline,
        upstream: &gst::Element,
        downstream: &gst::Element,
    ) -> Result<()> {
        bin.add_many(&self.elements)?;
        let chain = std::iter::once(upstream)
            .chain(&self.elements)
            .chain([downstream]);
        gst::Element::link_many(chain)?;
        Ok(())
    }

    /// Draws `captions` from the next frame on, one per overlay (those
    /// beyond the row's slots are not drawn); the other overlays go silent.
    pub fn show(&self, captions: &[Caption]) {
        let slots = self.elements.len() - 1;
        if captions.len() > slots {
            tracing::debug!(
                shown = slots,
                tiles = captions.len(),
                "more tiles than caption slots"
            );
        }
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(captions.to_vec());
    }
}

/// Sets each overlay of the row to its caption, or silent. On the streaming
/// thread only (see `CaptionRow::new`).
fn apply(overlays: &[gst::Element], captions: &[Caption]) {
    let mut overlays = overlays.iter();
    for (caption, overlay) in captions.iter().zip(overlays.by_ref()) {
        let font = format!("Sans Bold {}px", caption.font_px);
        // Setting a property, even to its value, renders the text anew.
        if overlay.property::<Option<String>>("text").as_deref() != Some(&caption.markup) {
            overlay.set_property("text", caption.markup.as_str());
        }
        if overlay.property::<Option<String>>("font-desc").as_deref() != Some(&font) {
            overlay.set_property("font-desc", font);
        }
        overlay.set_property("xpos", caption.x);
        overlay.set_property("ypos", caption.y);
        overlay.set_property("silent", false);
    }
    for overlay in overlays {
        overlay.set_property("silent", true);
    }
}

fn overlay(name: &str) -> Result<gst::Element> {
    gst::ElementFactory::make("textoverlay")
        .name(name)
        .property("silent", true)
        // No text pad is linked: the text is the "text" property.
        .property("wait-text", false)
        .property("auto-resize", false)
        .property("shaded-background", true)
        .property_from_str("halignment", "position")
        .property_from_str("valignment", "position")
        .build()
        .map_err(|e| anyhow!("textoverlay (gstreamer1.0-x): {e}"))
}
