"""Real labelled photos as fkd face's yardstick (fkd.photo.labelled): a face's true crop from its labels
in the photo and in the crop, the located face that matches it, and its points in the true crop."""
import cv2
import numpy as np
import pandas as pd
import pytest

from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS, as_points
from fkd.data.competition import load_training
from fkd.photo.geometry import apply, compose, invert
from fkd.photo.labelled import HEADER, in_true_crop, matching_face, read_labelled_photos, true_crop_matrix
from fkd.photo.scenes import scene


def write_labelled_photos(folder, images, truth, rows, seed=0):
    """Each row's face placed on a cluttered photo (with one other face), its labels taken into the
    photo through the placement: a folder as ../shared/data/photos is. Returns (folder, each face's
    photo -> crop matrix)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    records, placements = [], []
    for row in rows:
        photo, matrices = scene(images[[row, (row + 1) % len(images)]], rng, width=480, height=360)
        name = f"face{row}.png"
        cv2.imwrite(str(folder / name), photo)
        points = apply(matrices[0], as_points(truth[row])).reshape(-1)   # scene's matrices: face -> photo
        records.append([name, row, photo.shape[1], photo.shape[0], *points])
        placements.append(invert(matrices[0]))
    pd.DataFrame(records, columns=HEADER).to_csv(folder / "labels.csv", index=False)
    return folder, placements


def test_the_true_crop_is_the_placement_and_points_come_back_through_it(competition, tmp_path):
    images, truth = load_training(competition)
    rows = [0, 5, 9]
    folder, placements = write_labelled_photos(tmp_path / "photos", images, truth, rows)
    table = read_labelled_photos(folder)
    assert list(table["training_row"]) == rows and all(map(lambda p: p.endswith(".png"), table["path"]))
    for (_, labels), placement, row in zip(table.iterrows(), placements, rows):
        true_matrix = true_crop_matrix(labels[COLUMNS].to_numpy(float), truth[row])
        np.testing.assert_allclose(true_matrix, placement, atol=1e-3)
        elsewhere = compose(np.float64([[1, 0, 200], [0, 1, 0]]), invert(true_matrix))   # a crop 200 px away
        assert matching_face([invert(elsewhere), true_matrix], true_matrix, 0.35) == 1
        assert matching_face([invert(elsewhere)], true_matrix, 0.35) is None
        moved = compose(np.float64([[1, 0, 1.5], [0, 1, -2.0]]), true_matrix)   # a crop 1.5 px right, 2 up
        shifted = truth[row] + np.where(np.arange(30) % 2 == 0, 1.5, -2.0)
        np.testing.assert_allclose(in_true_crop(shifted, moved, true_matrix), truth[row], atol=1e-3)


def test_a_labels_file_without_the_columns_is_one_clear_error(tmp_path):
    (tmp_path / "labels.csv").write_text("file,row\nx.jpg,0\n")
    with pytest.raises(FkdError, match="labels.csv.*expected the columns file, training_row, width, height"):
        read_labelled_photos(tmp_path)
