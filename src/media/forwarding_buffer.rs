//! A jitter buffer that holds nothing, for the SFU's publish connections:
//! what rtpbin gets from its `request-jitterbuffer` signal in place of an
//! `rtpjitterbuffer`.
//!
//! A forwarder has no use for a jitter buffer: each subscriber's own
//! smooths and reorders what it gets, and the publish side already runs at
//! zero latency. But an rtpjitterbuffer costs two threads per received
//! stream (the one that pushes its packets out, and its timers), and every
//! packet is handed from the connection's receive thread to the first of
//! them: on two cores that hand-off, with the buffer's own bookkeeping,
//! was a large part of what each publisher cost. This element passes each
//! packet on in the thread it came in on.
//!
//! What is lost with the real one, and why that is fine here:
//! - reordering: subscribers' jitter buffers reorder;
//! - lip sync offsets (rtpbin's `ts-offset`, from the publisher's sender
//!   reports): packets keep their arrival times, which is what the
//!   forwarded streams' own sender reports then describe; a recording of
//!   an SFU room takes its audio and video as they arrived (on loopback
//!   and LANs within a frame);
//! - loss detection and NACKs: the publish answer never negotiates NACK.
//!
//! rtpbin sets `latency` on any jitter buffer it is given and webrtcbin
//! sets `do-retransmission`, so both are here (and kept, unused); `stats`
//! is there for webrtcbin's get-stats. Nothing else of rtpjitterbuffer's
//! interface is looked up unconditionally (rtpbin checks first).

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

glib::wrapper! {
    pub struct ForwardingBuffer(ObjectSubclass<imp::ForwardingBuffer>)
        @extends gst::Element, gst::Object;
}

impl ForwardingBuffer {
    /// A new one, as rtpbin's `request-jitterbuffer` handler returns it:
    /// a floating reference, like the element factory's, which the bin it
    /// is added to takes over (a plain reference would be one too many
    /// and the element would outlive its stream).
    pub fn for_rtpbin() -> glib::Value {
        let element: ForwardingBuffer = glib::Object::new();
        // SAFETY: a GObject we just made and hold. Once `element` is
        // dropped the value holds its only reference, and a floating
        // reference is what whoever sinks it takes over.
        unsafe {
            glib::gobject_ffi::g_object_force_floating(element.as_ptr().cast());
        }
        element.to_value()
    }

    /// How many exist now: each room's go when it closes (tests/no_leaks.rs
    /// checks that the floating reference above is right).
    pub fn alive() -> usize {
        imp::ALIVE.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Makes `rtpbin` (a webrtcbin's, found by name) give each new received
/// stream a `ForwardingBuffer` instead of an rtpjitterbuffer. Must be
/// called before any stream arrives.
pub fn install(webrtc: &gst::Element) {
    let Some(rtpbin) = crate::media::webrtc::rtpbin_of(webrtc) else {
        tracing::warn!("webrtcbin has no rtpbin: its jitter buffers stay");
        return;
    };
    rtpbin.connect("request-jitterbuffer", false, |_| {
        Some(ForwardingBuffer::for_rtpbin())
    });
}

mod imp {
    use super::*;
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    pub static ALIVE: AtomicUsize = AtomicUsize::new(0);

    pub struct ForwardingBuffer {
        sink: gst::Pad,
        src: gst::Pad,
        latency: AtomicU32,
        do_retransmission: AtomicBool,
    }

    impl ForwardingBuffer {
        /// Arrival time as the packet's time, as rtpjitterbuffer gives it:
        /// the receive path stamps only the DTS.
        fn chain(&self, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            if buffer.pts().is_none()
                && let Some(dts) = buffer.dts()
            {
                buffer.make_mut().set_pts(dts);
            }
            self.src.push(buffer)
        }
    }

    impl Drop for ForwardingBuffer {
        fn drop(&mut self) {
            ALIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for ForwardingBuffer {
        const NAME: &'static str = "GridmixForwardingBuffer";
        type Type = super::ForwardingBuffer;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let sink = gst::Pad::builder_from_template(
                &klass.pad_template("sink").expect("sink template"),
            )
            .chain_function(|_, parent, buffer| {
                ForwardingBuffer::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.chain(buffer),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
            let src =
                gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                    .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                    .build();
            ALIVE.fetch_add(1, Ordering::Relaxed);
            ForwardingBuffer {
                sink,
                src,
                latency: AtomicU32::new(0),
                do_retransmission: AtomicBool::new(false),
            }
        }
    }

    impl ObjectImpl for ForwardingBuffer {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecUInt::builder("latency")
                        .nick("Latency")
                        .blurb("Kept for rtpbin, which sets it; nothing is held")
                        .build(),
                    glib::ParamSpecBoolean::builder("do-retransmission")
                        .nick("Do retransmission")
                        .blurb("Kept for webrtcbin, which sets it; no NACKs are sent")
                        .build(),
                    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                        .nick("Statistics")
                        .blurb("Empty: nothing is buffered, lost or late here")
                        .read_only()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            match pspec.name() {
                "latency" => self
                    .latency
                    .store(value.get().unwrap_or_default(), Ordering::Relaxed),
                "do-retransmission" => self
                    .do_retransmission
                    .store(value.get().unwrap_or_default(), Ordering::Relaxed),
                _ => {}
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "latency" => self.latency.load(Ordering::Relaxed).to_value(),
                "do-retransmission" => self.do_retransmission.load(Ordering::Relaxed).to_value(),
                _ => gst::Structure::new_empty("application/x-rtp-jitterbuffer-stats").to_value(),
            }
        }

        fn constructed(&self) {
            self.parent_constructed();
            let element = self.obj();
            for pad in [&self.sink, &self.src] {
                if element.add_pad(pad).is_err() {
                    tracing::warn!("forwarding buffer: could not add {}", pad.name());
                }
            }
        }
    }

    impl GstObjectImpl for ForwardingBuffer {}

    impl ElementImpl for ForwardingBuffer {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Forwarding jitter buffer",
                    "Filter/Network/RTP",
                    "Passes RTP packets on as they arrive, for a forwarder",
                    "gridmix",
                )
            });
            Some(&*METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let caps = gst::Caps::new_empty_simple("application/x-rtp");
                [gst::PadDirection::Sink, gst::PadDirection::Src]
                    .into_iter()
                    .map(|direction| {
                        let name = if direction == gst::PadDirection::Sink {
                            "sink"
                        } else {
                            "src"
                        };
                        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                            .expect("pad template")
                    })
                    .collect()
            });
            TEMPLATES.as_ref()
        }
    }
}
