r"""Exact solutions of the matching functional: specs, α-expansion, minimizers, λ(α), matched order, magic C; in one or two observables."""

from ._budget import OverBudget as OverBudget
from ._budget import budget as budget
from ._errors import NoUniqueMinimizerError as NoUniqueMinimizerError
from ._errors import NotNormalizableError as NotNormalizableError
from ._errors import OneLineParser as OneLineParser
from ._errors import RenormError as RenormError
from ._errors import SpecError as SpecError
from ._errors import one_line as one_line
from ._expand import Coefficient as Coefficient
from ._expand import coefficients as coefficients
from ._data import EventSample as EventSample
from ._data import Histogram as Histogram
from ._data import event_sample as event_sample
from ._data import read_events as read_events
from ._data import read_histogram as read_histogram
from ._expand import expand as expand
from ._files import json_safe as json_safe
from ._files import write_atomic as write_atomic
from ._frame import Frame as Frame
from ._frame import distance_frame as distance_frame
from ._fit import DataSource as DataSource
from ._fit import OrderFit as OrderFit
from ._fit import fit_order as fit_order
from ._functions import SPECIAL_FUNCTIONS as SPECIAL_FUNCTIONS
from ._functions import SpecialFunction as SpecialFunction
from ._functions import register_function as register_function
from ._functions import unregister_function as unregister_function
from ._magic import MagicC as MagicC
from ._magic import MagicCheck as MagicCheck
from ._magic import magic_c as magic_c
from ._magic import parse_target as parse_target
from ._matching import LAMBDA as LAMBDA
from ._matching import MATCHING as MATCHING
from ._matching import LossKernel as LossKernel
from ._matching import MatchingFunction as MatchingFunction
from ._matching import matching_function as matching_function
from ._maps import MAPS as MAPS
from ._maps import NUMPY as NUMPY
from ._maps import ArrayOps as ArrayOps
from ._maps import SupportMap as SupportMap
from ._maps import default_map as default_map
from ._maps import quadrature_map as quadrature_map
from ._maps import register_map as register_map
from ._multi import Bound as Bound
from ._multi import MultiMinimizer as MultiMinimizer
from ._multi import MultiProblem as MultiProblem
from ._multi import MultiSolution as MultiSolution
from ._multi import make_multi_problem as make_multi_problem
from ._multi import marginal_problem as marginal_problem
from ._multi import multi_coefficients as multi_coefficients
from ._multi import multi_matched_order as multi_matched_order
from ._numeric import numeric as numeric
from ._quadrature import integrate as integrate
from ._solve import ExactMinimizer as ExactMinimizer
from ._solve import MatchedOrder as MatchedOrder
from ._solve import Solution as Solution
from ._solve import bulk_points as bulk_points
from ._solve import exact_minimizer as exact_minimizer
from ._solve import matched_order as matched_order
from ._solve import solve as solve
from ._spec import LIMITS as LIMITS
from ._spec import Limits as Limits
from ._spec import Problem as Problem
from ._spec import load_spec as load_spec
from ._spec import make_problem as make_problem
from ._spec import parse_expression as parse_expression
from ._spec import to_toml as to_toml

__all__ = [
    "NotNormalizableError", "NoUniqueMinimizerError", "RenormError", "SpecError", "Coefficient", "coefficients", "expand",
    "Frame", "distance_frame", "MagicC", "MagicCheck", "magic_c", "parse_target", "numeric",
    "ArrayOps", "NUMPY", "SupportMap", "MAPS", "register_map", "default_map", "quadrature_map",
    "integrate", "LAMBDA", "ExactMinimizer", "MatchedOrder", "Solution", "exact_minimizer",
    "matched_order", "solve", "bulk_points", "SpecialFunction", "SPECIAL_FUNCTIONS", "register_function", "unregister_function", "LIMITS", "Limits", "Problem", "load_spec", "make_problem", "parse_expression",
    "to_toml", "one_line", "OneLineParser", "budget", "OverBudget", "write_atomic", "json_safe",
    "MatchingFunction", "LossKernel", "MATCHING", "matching_function",
    "Bound", "MultiProblem", "MultiMinimizer", "MultiSolution", "make_multi_problem", "marginal_problem", "multi_coefficients",
    "multi_matched_order",
    "Histogram", "read_events", "read_histogram", "EventSample", "event_sample", "OrderFit", "DataSource", "fit_order",
]
