"""Profiles: the mergeable data model (``model``) and its computation (``compute``)."""

from loopml.data.profile.compute import EXACT_DISTINCT_ROWS as EXACT_DISTINCT_ROWS
from loopml.data.profile.compute import column_kind as column_kind
from loopml.data.profile.compute import profile as profile
from loopml.data.profile.model import MAX_CATEGORIES as MAX_CATEGORIES
from loopml.data.profile.model import PROFILE_FORMAT as PROFILE_FORMAT
from loopml.data.profile.model import QUANTILES as QUANTILES
from loopml.data.profile.model import TOP_K as TOP_K
from loopml.data.profile.model import ColumnProfile as ColumnProfile
from loopml.data.profile.model import Frequencies as Frequencies
from loopml.data.profile.model import Kind as Kind
from loopml.data.profile.model import Lengths as Lengths
from loopml.data.profile.model import NumericStats as NumericStats
from loopml.data.profile.model import Profile as Profile
from loopml.data.profile.model import TemporalRange as TemporalRange
from loopml.data.profile.model import merge as merge
from loopml.data.profile.model import merge_all as merge_all
