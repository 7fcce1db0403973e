"""The one exception type of the inference package."""


class InputError(ValueError):
  """Bad keypoints, file, option or checkpoint; the message is one line.

  Messages name the file (or argument), the field and what was expected
  versus what was found, e.g.
  `poses.json: keypoints_2d: expected shape [F, J, 2|3], got (17, 4)`.
  """
