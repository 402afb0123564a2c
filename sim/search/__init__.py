from sim.search.runner import SearchResult, search
from sim.search.space import SearchSpace

__all__ = ["SearchResult", "SearchSpace", "search"]
