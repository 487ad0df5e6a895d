"""What a generated query may contain: the guard's allow-lists (`guard.py` applies them).

Three lists, each of names, everything else refused:

- `FUNCTIONS`: PostgreSQL built-in scalar, aggregate, window and set-returning functions
  that compute from their arguments alone: strings, numbers, dates, conditionals, JSON,
  arrays, the aggregates and the window functions. None of them reads a file, a large object,
  a setting, the catalog, another session or another database, takes SQL as text, sleeps,
  locks, or writes. Matched by name, unqualified or in `pg_catalog`.
- `TYPED_FUNCTIONS`: what sqlglot parses some of those (and PostgreSQL's operators) into,
  by class name; the SQL that runs is sqlglot's rendering of them, which names a function of
  `FUNCTIONS` or an operator (a unit test parses every name of `FUNCTIONS` and checks that it
  lands in one of the two lists).
- `SYNTAX`: the other parts of a query: SELECT and its clauses, joins, set operations,
  WITH, subqueries, literals, casts' types, the comparison and arithmetic operators. No
  statement other than SELECT is among them, no INTO, no locking clause, no parameter.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# fmt: off
FUNCTIONS = _names("""
ascii btrim bit_length char_length character_length chr concat concat_ws format initcap left
length lower lpad ltrim md5 octet_length overlay position regexp_count regexp_instr regexp_like
regexp_match regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table
regexp_substr repeat replace reverse right rpad rtrim split_part starts_with string_to_array
string_to_table strpos substr substring to_hex translate trim upper

abs acos asin atan atan2 cbrt ceil ceiling cos cot degrees div exp factorial floor gcd lcm ln
log log10 min_scale mod pi power radians random round scale sign sin sqrt tan trim_scale trunc
width_bucket

age clock_timestamp date_bin date_part date_trunc extract isfinite justify_days justify_hours
justify_interval make_date make_interval make_time make_timestamp make_timestamptz now
statement_timestamp transaction_timestamp timezone to_char to_date to_number to_timestamp

coalesce nullif greatest least num_nonnulls num_nulls

any_value array_agg avg bit_and bit_or bit_xor bool_and bool_or count every json_agg jsonb_agg
json_object_agg jsonb_object_agg max min string_agg sum corr covar_pop covar_samp regr_avgx
regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev
stddev_pop stddev_samp variance var_pop var_samp mode percentile_cont percentile_disc rank
dense_rank percent_rank cume_dist grouping

row_number ntile lag lead first_value last_value nth_value

to_json to_jsonb row_to_json array_to_json json_build_array jsonb_build_array json_build_object
jsonb_build_object json_object jsonb_object json_array_length jsonb_array_length json_each
jsonb_each json_each_text jsonb_each_text json_extract_path jsonb_extract_path
json_extract_path_text jsonb_extract_path_text json_object_keys jsonb_object_keys
json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text
json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls jsonb_set jsonb_insert jsonb_pretty
jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array
jsonb_path_query_first

array_append array_cat array_dims array_fill array_length array_lower array_ndims
array_position array_positions array_prepend array_remove array_replace array_to_string
array_upper cardinality generate_series generate_subscripts trim_array unnest

row
""")

TYPED_FUNCTIONS = _names("""
Abs Acos AnyValue ArrayAgg ArrayAppend ArrayConcat ArrayPosition ArrayPrepend ArrayRemove
ArraySize ArrayToString Ascii Asin Atan Atan2 Avg BitLength BitwiseAndAgg BitwiseOrAgg
BitwiseXorAgg Cbrt Ceil Chr Coalesce Concat ConcatWs Corr Cos Cot Count CovarPop CovarSamp
CumeDist CurrentDate CurrentTime CurrentTimestamp DateBin Degrees DenseRank Exp Explode
ExplodingGenerateSeries Extract Factorial FirstValue Floor Format Greatest GroupConcat Grouping
Hex Initcap JSONArrayAgg JSONBObjectAgg JSONExtract JSONExtractScalar JSONObject JSONObjectAgg
JSONStripNulls JustifyDays JustifyHours JustifyInterval Lag LastValue Lead Least Left Length Ln
Localtime Localtimestamp Log LogicalAnd LogicalOr Lower MD5 MakeInterval Max Min Mod Mode
NthValue Ntile Nullif Overlay Pad PercentRank PercentileCont PercentileDisc Pi Pow Radians Rand
Rank RegexpCount RegexpInstr RegexpLike RegexpILike RegexpReplace RegexpSubstr RegrAvgx RegrAvgy
RegrCount RegrIntercept RegrR2 RegrSlope RegrSxx RegrSxy RegrSyy Repeat Replace Reverse Right
Round RowNumber Sign Sin SplitPart Sqrt StartsWith Stddev StddevPop StddevSamp StrPosition
StrToDate StringToArray Substring Sum Tan TimeFromParts TimeToStr TimestampFromParts
TimestampTrunc ToNumber Translate Trim Trunc UnixToTime Upper Variance VariancePop WidthBucket

And Or Xor Case If Cast TryCast Array Collate Exists IntDiv
ArrayContains ArrayContainsAll ArrayContainedBy ArrayOverlaps
JSONBContains JSONBContainsTopKey JSONBContainsAnyTopKeys JSONBContainsAllTopKeys JSONBExtract
JSONBExtractScalar
""")

SYNTAX = _names("""
Select From Where Group Having Order Ordered Limit Offset Fetch LimitOptions Distinct Qualify
Join Lateral Table TableAlias Subquery Values Tuple Union Intersect Except With CTE
Window WindowSpec Filter WithinGroup IgnoreNulls RespectNulls Cube Rollup GroupingSets
Column Identifier Star Dot Alias Literal Boolean Null Var DataType DataTypeParam Interval
Paren Bracket Slice Neg Not Any All
Add Sub Mul Div Mod DPipe EQ NEQ GT GTE LT LTE Is In Between Like ILike SimilarTo Escape
NullSafeEQ NullSafeNEQ BitwiseAnd BitwiseOr BitwiseXor BitwiseNot BitwiseLeftShift
BitwiseRightShift AtTimeZone Overlaps JSONPath JSONPathKey JSONPathRoot JSONPathSubscript
TableSample IntDiv Variadic JSONKeyValue
""")
# fmt: on

QUALIFIERS = frozenset({"pg_catalog"})  # a function may be named in this schema, not in another
