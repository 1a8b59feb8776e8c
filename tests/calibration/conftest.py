import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run the calibration tests on one intra-op thread (and restore the setting after).

    The inputs here are small: a second thread only adds synchronisation, which costs
    milliseconds per operation when the 2-core CI machine is busy. Results do not depend on it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
