"""Filter records and the geo index declaration (plain namedtuples)."""
from __future__ import annotations

from collections import namedtuple

Prefix = namedtuple('Prefix', 'attr prefix')
Suffix = namedtuple('Suffix', 'attr suffix')
Pattern = namedtuple('Pattern', 'attr pattern')
Geofilter = namedtuple('Geo', 'name lon lat radius measure count')  # type: ignore[name-match]
GeoIndex = namedtuple('GeoIndex', 'name callback')

Prefix.__doc__ = 'Filter record: some token of column ``attr`` starts with ``prefix``.'
Suffix.__doc__ = 'Filter record: some token of ``attr`` ends with the reverse of ``suffix``.'
Pattern.__doc__ = 'Filter record: some token of column ``attr`` matches ``pattern`` (like()).'
Geofilter.__doc__ = 'Filter record: entities within ``radius`` of (lon, lat) in geo index ``name``.'
GeoIndex.__doc__ = 'Geo index declaration: ``callback(data)`` returns {"lon", "lat"} or a list of them.'
