"""kernel-metadata.json: the checks `kaggle kernels push` applies and more (unknown keys, machine shape)."""
import difflib
import json
import os
import re
from pathlib import Path

from fkd.core.atomic import read_json
from fkd.core.errors import FkdError
from fkd.kaggle.program import kaggle_json

METADATA = "kernel-metadata.json"
USERNAME_PLACEHOLDER = "your-kaggle-username"
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # letters, digits and hyphens, as in Kaggle's profile URLs


# The keys `kaggle kernels push` (kaggle 2.2.5, KaggleApi.kernels_push) reads. It silently ignores
# any other key, so here an unknown key is a typo and an error.
METADATA_KEYS = {
    "id", "id_no", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
    "enable_tpu", "enable_internet", "dataset_sources", "competition_sources", "kernel_sources",
    "model_sources", "keywords", "docker_image_pinning_type", "docker_image", "machine_shape",
}


# machine_shape: the accelerators a push may ask for (kaggle 2.2.5's --accelerator help, kagglesdk's
# ApiSaveKernelRequest). P100 and the v3 TPUs are retired: Kaggle silently runs something else, and
# Kaggle's torch (built for sm_70 and newer) cannot run on a P100 anyway.
GPU_MACHINE_SHAPES = ("NvidiaTeslaT4",)
TPU_MACHINE_SHAPES = ("TpuV5E8",)
RETIRED_MACHINE_SHAPES = ("NvidiaTeslaP100", "TpuV38", "Tpu1VmV38", "TpuV232", "TpuV2256")
BOOLEAN_KEYS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
LIST_KEYS = ("dataset_sources", "competition_sources", "kernel_sources", "model_sources", "keywords")
LANGUAGES = ("python", "r", "rmarkdown")        # KaggleApi.valid_push_language_types
KERNEL_TYPES = ("script", "notebook")           # KaggleApi.valid_push_kernel_types
PINNING_TYPES = ("original", "latest")          # KaggleApi.valid_push_pinning_types


def slugify(text: str) -> str:
    """The URL slug Kaggle derives from a title (python-slugify, as the kaggle CLI uses)."""
    try:
        from slugify import slugify as _slugify
        return _slugify(text)
    except ImportError:  # the same result for plain ASCII titles
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def validate_metadata(meta, path, folder=None, options=None) -> None:
    """The checks `kaggle kernels push` applies, plus: unknown keys, real booleans, real lists.

    `folder` given: code_file must exist in it. Raises FkdError naming the file and the key, or the
    command-line option that set the key (`options`: key -> option, e.g. {"machine_shape": "--machine-shape"}).
    """
    options = options or {}

    def fail(key, message):
        if key in options:
            raise FkdError(f"{options[key]}: {message}")
        raise FkdError(f"key {key!r}: {message}", path=path)

    if not isinstance(meta, dict):
        raise FkdError("must hold a JSON object", path=path)
    for key in meta:
        if key not in METADATA_KEYS:
            close = difflib.get_close_matches(key, sorted(METADATA_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(key, f"unknown key{hint}: `kaggle kernels push` would silently ignore it")
    if "title" not in meta or not isinstance(meta["title"], str) or len(meta["title"]) < 5:
        fail("title", "must be a string of at least five characters")
    code_file = meta.get("code_file")
    if not isinstance(code_file, str) or not code_file:
        fail("code_file", "a source file must be specified")
    if folder is not None and not (Path(folder) / code_file).is_file():
        fail("code_file", f"source file not found: {Path(folder) / code_file}")
    slug, id_no = meta.get("id"), meta.get("id_no")
    if not slug and not id_no:
        fail("id", "an id 'owner/slug' (or id_no) must be specified")
    if slug:
        if not isinstance(slug, str):
            fail("id", "must be a string 'owner/slug'")
        parts = slug.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            fail("id", f"{slug!r} must be 'owner/slug' (no version)")
        if len(parts[1]) < 5:
            fail("id", f"kernel slug {parts[1]!r} must be at least five characters")
        if slugify(meta["title"]) != parts[1].lower():
            fail("title", f"the title {meta['title']!r} gives the slug {slugify(meta['title'])!r}, not {parts[1]!r}: "
                          "Kaggle would file the kernel under another name")
    if meta.get("language") not in LANGUAGES:
        fail("language", f"{meta.get('language')!r} is not one of {', '.join(LANGUAGES)}")
    if meta.get("kernel_type") not in KERNEL_TYPES:
        fail("kernel_type", f"{meta.get('kernel_type')!r} is not one of {', '.join(KERNEL_TYPES)}")
    if code_file.endswith(".py") and meta["kernel_type"] != "script":
        fail("kernel_type", f"a .py code_file needs kernel_type 'script', not {meta['kernel_type']!r}")
    for key in BOOLEAN_KEYS:
        if key in meta and not isinstance(meta[key], bool):
            fail(key, f"must be true or false, not {json.dumps(meta[key])}")
    for key in LIST_KEYS:
        if key in meta:
            if not isinstance(meta[key], list) or not all(isinstance(v, str) for v in meta[key]):
                fail(key, f"must be a list of strings, not {json.dumps(meta[key])}")
    for source in meta.get("dataset_sources", []):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            fail("dataset_sources", f"{source!r} must be 'owner/dataset-slug'")
    for source in meta.get("kernel_sources", []):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and not parts[2]):
            fail("kernel_sources", f"{source!r} must be 'owner/kernel-slug'")
        if len(parts[1]) < 5:
            fail("kernel_sources", f"kernel slug {parts[1]!r} must be at least five characters")
    for source in meta.get("model_sources", []):
        parts = source.split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
            fail("model_sources", f"{source!r} must be 'owner/model/framework/instance/version-number'")
    shape = meta.get("machine_shape")
    if shape is not None:
        accepted = GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES
        if shape in RETIRED_MACHINE_SHAPES:
            fail("machine_shape", f"{shape!r} is retired (Kaggle runs another machine instead); "
                                  f"accepted: {', '.join(accepted)}")
        if shape not in accepted:
            fail("machine_shape", f"{json.dumps(shape)} is not one of {', '.join(accepted)}")
        wanted = GPU_MACHINE_SHAPES if meta.get("enable_gpu") else TPU_MACHINE_SHAPES if meta.get("enable_tpu") else ()
        if shape not in wanted:
            fail("machine_shape", f"{shape!r} does not go with enable_gpu {json.dumps(meta.get('enable_gpu'))} and "
                                  f"enable_tpu {json.dumps(meta.get('enable_tpu'))}")
    elif meta.get("enable_gpu"):
        fail("machine_shape", f"enable_gpu asks for a GPU but not which: add \"machine_shape\": "
                              f"\"{GPU_MACHINE_SHAPES[0]}\" (accepted: {', '.join(GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES)})")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in PINNING_TYPES:
        fail("docker_image_pinning_type", f"{pinning!r} is not one of {', '.join(PINNING_TYPES)}")



def _read_metadata_json(path, missing):
    """A kernel-metadata.json's value: read_json's errors, and a file that is not UTF-8 text (an image
    given as --template) or cannot be read is one line naming it too."""
    try:
        return read_json(path, missing)
    except UnicodeDecodeError:
        raise FkdError("not kernel metadata: not UTF-8 text (a kernel-metadata.json is a JSON object)",
                       path=path) from None
    except OSError as error:
        raise FkdError(f"cannot read it ({error.strerror or error})", path=path) from None


def load_metadata(folder):
    """kernel-metadata.json of a kernel folder, validated (code_file must exist)."""
    path = Path(folder) / METADATA
    meta = _read_metadata_json(path, "no such file: build the kernel first (`make kernel`)")
    validate_metadata(meta, path, folder)
    return meta


def kaggle_username(explicit=None):
    """--username, else $KAGGLE_USERNAME, else the username in kaggle.json (never its key), else None;
    one that cannot be a Kaggle username is an error naming where it came from."""
    if explicit is not None:
        return checked_username(explicit, "--username")
    if os.environ.get("KAGGLE_USERNAME"):
        return checked_username(os.environ["KAGGLE_USERNAME"], "$KAGGLE_USERNAME")
    username = kaggle_json().get("username")
    return checked_username(username, "kaggle.json's username") if isinstance(username, str) and username else None


def checked_username(username: str, source: str) -> str:
    if not USERNAME.fullmatch(username):
        raise FkdError(f"{source} {username!r}: a Kaggle username is letters, digits and hyphens")
    return username


def resolve_template(template_path, username, slug=None, title=None):
    """The template with {username} filled in, validated (its errors name the file), then with the
    --slug / --title overrides, validated again (their errors name the option)."""
    template_path = Path(template_path)
    meta = _read_metadata_json(template_path, "no such file (the kernel metadata template)")
    if not isinstance(meta, dict):
        raise FkdError("must hold a JSON object", path=template_path)
    if isinstance(meta.get("id"), str):
        meta["id"] = meta["id"].replace("{username}", username or USERNAME_PLACEHOLDER)
    validate_metadata(meta, template_path)
    options = {}
    if slug is not None:
        meta["id"] = meta["id"].split("/")[0] + "/" + slug
        meta["title"] = slug.replace("-", " ")  # the title follows the slug ...
        options.update(id="--slug", title="--slug")
    if title is not None:                       # ... unless it is given
        meta["title"] = title
        options["title"] = "--title"
    validate_metadata(meta, template_path, options=options)
    return meta


def _variant(meta, suffix, **changes):
    """Metadata of a fold/ensemble kernel: slug and title get `suffix`."""
    out = dict(meta)
    owner, slug = meta["id"].split("/")
    out["id"] = f"{owner}/{slug}-{suffix}"
    out["title"] = f"{meta['title']} {suffix}"
    out.update(changes)
    return out


def is_placeholder(kernel_id: str) -> bool:
    return kernel_id.split("/")[0] in (USERNAME_PLACEHOLDER, "{username}")
