"""`python -m sweeplab.recorder`: the recorder process, as sweeplab.recorder.process.Recorder starts it."""

import os

from sweeplab.recorder.process import WARM_UP_ENV, connect, serve

serve(connect(), tuple(filter(None, os.environ[WARM_UP_ENV].split(","))))
