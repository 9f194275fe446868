"""`python -m sweeplab.recorder`: the recorder process, as sweeplab.recorder.process.Recorder starts it."""

import os

from sweeplab.recorder.process import WARM_UP_ENV, connect, serve
from sweeplab.recorder.remote import Remote

serve(*connect(), tuple(Remote(value) for value in filter(None, os.environ[WARM_UP_ENV].split(","))))
