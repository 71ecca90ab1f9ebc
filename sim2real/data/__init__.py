"""Datasets: the one episode format shared by simulated rollouts and real recordings, and readers
for what real robots record (LeRobot datasets, ROS bags)."""

from sim2real.data.episodes import Dataset, DatasetError, Episode, EpisodeWriter, dataset_from_arrays, read_dataset
from sim2real.data.formats import FORMATS, compare_cameras, detect_format, load_real

__all__ = ["FORMATS", "Dataset", "DatasetError", "Episode", "EpisodeWriter", "compare_cameras", "dataset_from_arrays",
           "detect_format", "load_real", "read_dataset"]
