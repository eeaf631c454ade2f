import os as _os

# FFmpeg inside OpenCV prints its own lines on stderr when it probes a file that is no video
# ("[mov,mp4,... @ 0x...] moov atom not found"); the replay camera says it in one line instead.
# Set before OpenCV is imported; a user's own setting wins.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
