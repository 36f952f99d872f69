//! The fixed media chains as GStreamer launch-syntax text (pipelines/*.gst).
//!
//! The files are compiled in as defaults; `--pipelines DIR` overrides any of
//! them by file name, so an operator can swap an encoder without recompiling.

use anyhow::{Context, Result};
use gst::prelude::*;
use std::path::Path;

/// One fixed chain of the room pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    VideoDecode,
    VideoEncode,
    AudioDecode,
    AudioEncode,
    /// Recordings (MP4, HLS): raw composite to H.264.
    RecordH264,
    /// Recordings (MP4, HLS): raw full mix to AAC.
    RecordAac,
    /// Recordings (WebM): raw full mix to Opus.
    RecordOpus,
}

impl Chain {
    pub const ALL: [Chain; 7] = [
        Chain::VideoDecode,
        Chain::VideoEncode,
        Chain::AudioDecode,
        Chain::AudioEncode,
        Chain::RecordH264,
        Chain::RecordAac,
        Chain::RecordOpus,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Chain::VideoDecode => "video-decode.gst",
            Chain::VideoEncode => "video-encode.gst",
            Chain::AudioDecode => "audio-decode.gst",
            Chain::AudioEncode => "audio-encode.gst",
            Chain::RecordH264 => "record-h264.gst",
            Chain::RecordAac => "record-aac.gst",
            Chain::RecordOpus => "record-opus.gst",
        }
    }

    fn default_text(self) -> &'static str {
        match self {
            Chain::VideoDecode => include_str!("../../pipelines/video-decode.gst"),
            Chain::VideoEncode => include_str!("../../pipelines/video-encode.gst"),
            Chain::AudioDecode => include_str!("../../pipelines/audio-decode.gst"),
            Chain::AudioEncode => include_str!("../../pipelines/audio-encode.gst"),
            Chain::RecordH264 => include_str!("../../pipelines/record-h264.gst"),
            Chain::RecordAac => include_str!("../../pipelines/record-aac.gst"),
            Chain::RecordOpus => include_str!("../../pipelines/record-opus.gst"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineTemplates {
    texts: [String; Chain::ALL.len()],
}

/// Drops `#` comment lines and joins the rest, so files can explain themselves.
pub fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

impl PipelineTemplates {
    pub fn builtin() -> Self {
        Self {
            texts: Chain::ALL.map(|c| strip_comments(c.default_text())),
        }
    }

    /// Built-ins, with any file of the same name in `dir` taking precedence.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let mut templates = Self::builtin();
        if let Some(dir) = dir {
            for (i, chain) in Chain::ALL.iter().enumerate() {
                let path = dir.join(chain.file_name());
                if path.exists() {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading pipeline template {}", path.display()))?;
                    templates.texts[i] = strip_comments(&text);
                }
            }
        }
        Ok(templates)
    }

    pub fn text(&self, chain: Chain) -> &str {
        &self.texts[chain as usize]
    }

    /// A new bin for `chain` with ghost sink and src pads.
    pub fn build(&self, chain: Chain) -> Result<gst::Bin> {
        gst::parse::bin_from_description(self.text(chain), true)
            .with_context(|| format!("building the {} chain", chain.file_name()))
    }

    /// Builds every chain once, so a bad override fails at start-up, not mid-call.
    pub fn validate(&self) -> Result<()> {
        for chain in Chain::ALL {
            let bin = self.build(chain)?;
            for dir in ["sink", "src"] {
                anyhow::ensure!(
                    bin.static_pad(dir).is_some(),
                    "the {} chain must have one unlinked {dir} pad",
                    chain.file_name()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped() {
        assert_eq!(strip_comments("# hi\na ! b\n  # x\n ! c"), "a ! b  ! c");
    }

    #[test]
    fn every_file_in_pipelines_dir_builds_with_one_sink_and_one_src() {
        gst::init().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "gst") {
                let text = strip_comments(&std::fs::read_to_string(&path).unwrap());
                let bin = gst::parse::bin_from_description(&text, true)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                assert!(bin.static_pad("sink").is_some(), "{}", path.display());
                assert!(bin.static_pad("src").is_some(), "{}", path.display());
                seen += 1;
            }
        }
        assert_eq!(seen, Chain::ALL.len());
        PipelineTemplates::builtin().validate().unwrap();
    }

    #[test]
    fn an_override_dir_replaces_only_the_files_it_has() {
        gst::init().unwrap();
        let dir = std::env::temp_dir().join(format!("gridmix-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("audio-encode.gst"),
            "# mine\naudioconvert ! opusenc bitrate=16000",
        )
        .unwrap();
        let t = PipelineTemplates::load(Some(&dir)).unwrap();
        assert_eq!(
            t.text(Chain::AudioEncode),
            "audioconvert ! opusenc bitrate=16000"
        );
        assert_eq!(
            t.text(Chain::VideoEncode),
            PipelineTemplates::builtin().text(Chain::VideoEncode)
        );
        t.validate().unwrap();
        std::fs::write(dir.join("video-encode.gst"), "vp8enc ! nosuchelement").unwrap();
        let err = PipelineTemplates::load(Some(&dir))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(format!("{err:#}").contains("nosuchelement"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
