//! Start-up check that every GStreamer element gridmix uses is installed.

/// Each element gridmix creates, with the Debian package that ships it.
pub const REQUIRED_ELEMENTS: &[(&str, &str)] = &[
    ("webrtcbin", "gstreamer1.0-plugins-bad"),
    ("nicesrc", "gstreamer1.0-nice"),
    ("nicesink", "gstreamer1.0-nice"),
    ("dtlssrtpenc", "gstreamer1.0-plugins-bad"),
    ("srtpenc", "gstreamer1.0-plugins-bad"),
    ("rtpbin", "gstreamer1.0-plugins-good"),
    ("capssetter", "gstreamer1.0-plugins-good"),
    ("rtpvp8pay", "gstreamer1.0-plugins-good"),
    ("rtpvp8depay", "gstreamer1.0-plugins-good"),
    ("rtpopuspay", "gstreamer1.0-plugins-good"),
    ("rtpopusdepay", "gstreamer1.0-plugins-good"),
    ("vp8enc", "gstreamer1.0-plugins-good"),
    ("vp8dec", "gstreamer1.0-plugins-good"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("compositor", "gstreamer1.0-plugins-base"),
    ("audiomixer", "gstreamer1.0-plugins-base"),
    ("videotestsrc", "gstreamer1.0-plugins-base"),
    ("audiotestsrc", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("level", "gstreamer1.0-plugins-good"),
    ("valve", "libgstreamer1.0-0"),
    ("tee", "libgstreamer1.0-0"),
    ("queue", "libgstreamer1.0-0"),
    ("capsfilter", "libgstreamer1.0-0"),
    ("fakesink", "libgstreamer1.0-0"),
    // Recordings.
    ("webmmux", "gstreamer1.0-plugins-good"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("splitmuxsink", "gstreamer1.0-plugins-good"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("voaacenc", "gstreamer1.0-plugins-bad"),
    ("hlssink2", "gstreamer1.0-plugins-bad"),
    ("mpegtsmux", "gstreamer1.0-plugins-bad"),
    ("filesink", "libgstreamer1.0-0"),
    ("textoverlay", "gstreamer1.0-x"),
];

/// Every missing element gridmix needs, each as a sentence naming it and
/// its package.
pub fn check_elements() -> Result<(), String> {
    check(REQUIRED_ELEMENTS)
}

fn check(elements: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<String> = elements
        .iter()
        .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
        .map(|(name, package)| {
            format!("GStreamer element \"{name}\" is missing: install the Debian package {package}")
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_required_element_is_installed() {
        gst::init().unwrap();
        super::check_elements().unwrap();
    }

    #[test]
    fn a_missing_element_is_named_with_its_package_and_present_ones_are_not() {
        gst::init().unwrap();
        let said = super::check(&[
            ("queue", "libgstreamer1.0-0"),
            ("gridmixnosuchsink", "gstreamer1.0-gridmix-test"),
            ("gridmixnosuchsrc", "gstreamer1.0-gridmix-other"),
        ])
        .unwrap_err();
        assert_eq!(
            said,
            "GStreamer element \"gridmixnosuchsink\" is missing: install the Debian package gstreamer1.0-gridmix-test\n\
             GStreamer element \"gridmixnosuchsrc\" is missing: install the Debian package gstreamer1.0-gridmix-other"
        );
    }
}
