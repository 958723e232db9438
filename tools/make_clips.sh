#!/usr/bin/env bash
# Regenerate the fake Realtime server's speech clips (voicebridge/fake_realtime/clips/).
#
# Needs espeak-ng and sox on PATH (Debian/Ubuntu: apt-get install -y espeak-ng sox).
# Each clip is one short assistant utterance as raw G.711 mu-law, 8 kHz, mono, with the
# leading and trailing silence trimmed, so its byte count / 8 is its duration in ms.
# clips.json lists the files with their transcripts, in the order the fake plays them.
set -euo pipefail

out="$(cd "$(dirname "$0")/.." && pwd)/voicebridge/fake_realtime/clips"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

lines=(
  "Thanks for calling. How can I help you today?"
  "Sure, I can book a table for you. For how many people, and at what time?"
  "Great, a table for four at seven thirty. Is there anything else?"
  "Let me check that for you. One moment please."
  "I'm sorry, I didn't catch that. Could you say it again?"
  "Goodbye, and have a lovely evening."
)

json="["
for i in "${!lines[@]}"; do
  n=$(printf '%02d' $((i + 1)))
  text="${lines[$i]}"
  espeak-ng -v en-us -s 190 -w "$tmp/$n.wav" "$text"
  # silence/reverse/silence/reverse trims both ends; norm keeps levels alike across clips.
  sox "$tmp/$n.wav" -t raw -r 8000 -c 1 -e mu-law -b 8 "$out/$n.ulaw" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
  bytes=$(stat -c %s "$out/$n.ulaw")
  echo "$n.ulaw: $((bytes / 8)) ms  $text" >&2
  [ "$i" -gt 0 ] && json+=","
  # The transcripts above contain no quotes or backslashes, so no JSON escaping is needed.
  json+=$'\n'"  {\"file\": \"$n.ulaw\", \"transcript\": \"$text\"}"
done
json+=$'\n'"]"
printf '%s\n' "$json" > "$out/clips.json"
