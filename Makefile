# gridmix: `make run` serves on http://127.0.0.1:8080, `make test` runs every test.
# Both install what is missing first (Debian 12, as root); the install step is
# skipped in a second when everything is present.

SHELL := /bin/bash
CARGO := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
LISTEN ?= 127.0.0.1:8080

# What the server needs to build and run.
DEB_PACKAGES := pkg-config \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice \
	gstreamer1.0-x fonts-dejavu-core iproute2
PKGCONFIG_MODULES := gstreamer-1.0 gstreamer-app-1.0 gstreamer-sdp-1.0 gstreamer-webrtc-1.0 \
	gstreamer-pbutils-1.0
# One element from each plugin package gridmix needs, and those recordings
# and their tests use: x264enc (ugly), hlssink2 and voaacenc (bad), the H.264
# and AAC decoders the tests play recordings back with (bad), textoverlay for
# the names on recordings (gstreamer1.0-x, which draws with Pango: the font
# is DejaVu Sans from fonts-dejavu-core).
GST_ELEMENTS := webrtcbin nicesrc dtlssrtpenc compositor audiomixer opusenc vp8enc rtpvp8pay capssetter \
	webmmux mp4mux x264enc h264parse voaacenc hlssink2 openh264dec faad textoverlay
REQUIRED_FILES := /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
# `ip` (iproute2) makes the network namespace and shaped link that
# `gridmix bench --weak` puts weak participants behind.
PROGRAMS := ip tc
# What only the tests need: the browser tests drive Debian's Chromium
# through its WebDriver and Debian's Firefox ESR through its built-in
# WebDriver BiDi (Debian has no geckodriver); the TURN test relays media
# through Debian's coturn, which the test runs itself on loopback (the
# package's own service, if it starts one, is stopped: see below).
TEST_DEB_PACKAGES := chromium chromium-driver firefox-esr coturn
TEST_PROGRAMS := chromium chromedriver firefox-esr turnserver

.PHONY: deps test-deps build run test

# $(call install_if_missing,packages,programs): apt-get install only when a
# check fails.
define install_if_missing
	@ready=yes; \
	pkg-config --exists $(PKGCONFIG_MODULES) 2>/dev/null || ready=no; \
	for e in $(GST_ELEMENTS); do gst-inspect-1.0 $$e >/dev/null 2>&1 || ready=no; done; \
	for p in $(2); do command -v $$p >/dev/null 2>&1 || ready=no; done; \
	for f in $(REQUIRED_FILES); do test -e $$f || ready=no; done; \
	if [ $$ready = yes ]; then \
	  echo "everything needed is already installed"; \
	else \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(1); \
	fi
endef

deps:
	$(call install_if_missing,$(DEB_PACKAGES),$(PROGRAMS))

test-deps:
	$(call install_if_missing,$(DEB_PACKAGES) $(TEST_DEB_PACKAGES),$(PROGRAMS) $(TEST_PROGRAMS))
	@# The tests start their own turnserver; a system one would only hold ports.
	@if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet coturn 2>/dev/null; then \
	  systemctl stop coturn; systemctl disable coturn >/dev/null 2>&1 || true; \
	fi

build: deps
	$(CARGO) build --release --locked

run: build
	./target/release/gridmix serve --listen $(LISTEN)

test: test-deps
	$(CARGO) test --locked
