"""Datasets: rebuild VoxCeleb, HDTF and VFHQ subsets and the MNTE corpus from their manifests
(yt-dlp fetch, ffmpeg cut, face detection and tracking, the 512-px filter, 512² resize, Whisper
language ID) into a DuckDB catalog; and the language-bias audit of any face-video dataset."""
