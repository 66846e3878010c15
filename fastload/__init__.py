"""fastload: packed image stores and GPU data loading for training YOLOv5-family detectors."""

import gc
import os

__version__ = "0.1.0"

# A forked worker (DALI's source workers, the packer's pool) never collects what it inherited: a DALI pipeline this
# process left in a reference cycle would otherwise be shut down in the worker, where its threads do not exist (a
# hang or a segfault); and the objects it leaves alone keep their pages shared with this process.
os.register_at_fork(after_in_child=gc.freeze)
