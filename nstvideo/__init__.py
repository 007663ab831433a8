"""nstvideo: paint videos and photos in the style of an artwork.

    >>> import nstvideo
    >>> img = nstvideo.stylize_image("photo.jpg", ["monet.jpg"], size=256, iterations=200)
"""

__version__ = "0.1.0"

from nstvideo.api import RunReport, stylize  # noqa: E402
from nstvideo.errors import (InputError, ModelError, NstVideoError, OutputError,  # noqa: E402
                             RenderError)
from nstvideo.net import Training, load_net, paint, save_net  # noqa: E402
from nstvideo.photos import FolderReport, stylize_folder, stylize_image  # noqa: E402
from nstvideo.previews import PreviewReport, preview  # noqa: E402
from nstvideo.settings import StyleSettings, VideoSettings  # noqa: E402
from nstvideo.training import train_net  # noqa: E402
from nstvideo.video.render import VideoReport, stylize_video  # noqa: E402
from nstvideo.video.status import RenderStatus, render_status  # noqa: E402

__all__ = [
    "__version__", "stylize", "stylize_image", "stylize_folder", "stylize_video",
    "StyleSettings", "VideoSettings", "RunReport", "FolderReport", "VideoReport",
    "NstVideoError", "InputError", "ModelError", "OutputError", "RenderError",
    "train_net", "paint", "Training", "save_net", "load_net", "render_status", "RenderStatus",
    "preview", "PreviewReport",
]
