"""Quality control: the vocabulary of checks and the checks of one scene."""
