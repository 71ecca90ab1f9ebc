"""Datasets: the one episode format shared by simulated rollouts and real recordings."""

from sim2real.data.episodes import Dataset, DatasetError, Episode, EpisodeWriter, read_dataset

__all__ = ["Dataset", "DatasetError", "Episode", "EpisodeWriter", "read_dataset"]
