# The camera package sets OpenCV's FFmpeg log level before OpenCV loads; the engine imports it
# first so that this holds whichever engine module loads OpenCV first.
import camera  # noqa: F401
