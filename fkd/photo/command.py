"""`fkd face PHOTO|VIDEO|FOLDER... (--runs RUN_DIR... | --model MODEL.onnx)`, or `--camera 0`:
keypoints on photos (fkd.photo.locate, drawn by fkd.photo.draw) and tracked through videos
(fkd.photo.track). The argument handling only."""
import argparse

from fkd.core.arguments import non_negative_int, positive_int
from fkd.core.errors import FkdError
from fkd.photo.detect import available_detectors, mtcnn_available
from fkd.photo.draw import process_photos
from fkd.photo.locate import Predictor
from fkd.photo.track import CAMERA_INDICES, VIDEO_SUFFIXES, is_video, process_video
from fkd.train.rundir import check_run_readable


def camera_index(text: str) -> int:
    """--camera: a whole number from 0 (the first camera) to 63, refused before OpenCV sees it."""
    value = non_negative_int(text)
    if value not in CAMERA_INDICES:
        raise argparse.ArgumentTypeError(f"must be a camera index from {CAMERA_INDICES.start} to "
                                         f"{CAMERA_INDICES.stop - 1}, not {value}")
    return value


def add_arguments(parser):
    parser.add_argument("inputs", nargs="*", metavar="PHOTO_OR_VIDEO",
                        help=f"JPEG or PNG files or folders of them, and videos ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--camera", type=camera_index, metavar="INDEX",
                        help=f"track faces live from this camera, {CAMERA_INDICES.start} (the first) to "
                             f"{CAMERA_INDICES.stop - 1} (Ctrl-C ends)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", nargs="+", metavar="RUN_DIR",
                        help="run folder(s) whose fold models predict (their ensemble), each with its own "
                             "test-time views; always the complete-row output: all 15 points of every face")
    source.add_argument("--model", metavar="MODEL.onnx",
                        help="an ONNX file of `fkd export` instead of runs (onnxruntime; no torch)")
    parser.add_argument("--out", default="reports/faces", help="output folder (default: reports/faces)")
    parser.add_argument("--detector", default="auto", choices=["auto", "mtcnn", "haar", "lbp"],
                        help="face detector (auto: MTCNN from facenet-pytorch when installed, except with --model, "
                             "where it would import torch; else OpenCV's Haar cascade, else scikit-image's LBP)")
    parser.add_argument("--min-face", type=positive_int, default=24, help="smallest face in photo pixels (default 24)")
    parser.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation (whatever the runs set)")
    parser.add_argument("--no-refine", action="store_true",
                        help="photos: one pass only, no crop aligned on the prediction")
    parser.add_argument("--save-crops", action="store_true", help="photos: also write each 96x96 crop with its points")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="videos: temporal smoothing of the points, 0 (none, default) to 0.9 (heavy)")
    parser.add_argument("--detect-every", type=positive_int, default=30,
                        help="videos: look for new faces every this many frames (default 30)")
    parser.add_argument("--max-frames", type=positive_int, help="videos: stop after this many frames")
    parser.add_argument("--device", help="auto | cpu | cuda (default auto)")


def run(args):
    if args.model and args.no_tta:
        raise FkdError("--no-tta applies to --runs: an exported model has its test-time views built in")
    if not args.inputs and args.camera is None:
        raise FkdError("name photos, folders or videos, or --camera INDEX")
    if args.detector == "mtcnn" and not mtcnn_available():
        raise FkdError("--detector mtcnn needs facenet-pytorch: pip install --no-deps -r requirements-nodeps.txt")
    detector = args.detector
    if detector == "auto" and args.model:  # keep the ONNX path free of torch
        detector = next(name for name in available_detectors() if name != "mtcnn")
    for run_dir in args.runs or []:
        check_run_readable(run_dir)
    predict = Predictor(args.runs or [], args.model, not args.no_tta, args.device)
    photos = [path for path in args.inputs if not is_video(path)]
    videos = [path for path in args.inputs if is_video(path)] + ([] if args.camera is None else [args.camera])
    if photos:
        process_photos(photos, args.runs or [], args.out, detector=detector, min_size=args.min_face,
                       refine=not args.no_refine, save_crops=args.save_crops, predict=predict, model=args.model)
    for video in videos:
        process_video(video, predict, args.out, detector=detector, min_size=args.min_face,
                      detect_every=args.detect_every, smooth=args.smooth, max_frames=args.max_frames)
    print(predict.latency())
    return 0
