#!/usr/bin/env bash
# Regenerate the back-channel part of the speech-detector corpus (bench/corpus/backchannel/).
#
# Needs espeak-ng and sox on PATH (Debian/Ubuntu: apt-get install -y espeak-ng sox).
# Each file is one short caller sound ("mm-hm", "yeah", ...) as raw G.711 mu-law, 8 kHz,
# mono, trimmed of silence and normalised like the caller recordings (peak -6 dBFS).
# bench/speech_corpus.py mixes them over line noise; coughs and echo it makes itself.
set -euo pipefail

out="$(cd "$(dirname "$0")/.." && pwd)/bench/corpus/backchannel"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

words=("mm-hm" "uh-huh" "yeah" "okay" "right" "hmm" "mhm" "yes")
for voice in en-us en-us+f3; do
  for speed in 160 220; do
    for word in "${words[@]}"; do
      name="$(echo "$word" | tr -c 'a-z\n' '_')-${voice#en-us}${speed}"
      name="${name/-+/-}"
      espeak-ng -v "$voice" -s "$speed" -w "$tmp/w.wav" "$word"
      sox "$tmp/w.wav" -t raw -r 8000 -c 1 -e mu-law -b 8 "$out/$name.ulaw" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -6
      echo "$name: $(( $(stat -c %s "$out/$name.ulaw") / 8 )) ms" >&2
    done
  done
done
