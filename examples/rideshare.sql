-- The course's rideshare example (ksqlDB), run by eddy's SQL layer.
-- Tests: processor/tests/sql_rideshare.rs (embedded), tests/tests/sql_server.rs (`eddy sql -f`).
-- Cosmetic changes from the course text:
--   * geoEvents is declared (the course creates it elsewhere);
--   * routeWaypoints reads topic 'waypoints' instead of 'locations', because this script also
--     creates the stream `locations`, whose output topic is LOCATIONS.
-- qualifyPromotion is a user-defined function registered from Rust: TRUE when the ride is
-- within 5 km of its destination (the course leaves the threshold to the UDF).

CREATE STREAM geoEvents (rideId VARCHAR KEY, latitude DOUBLE, longitude DOUBLE,
                         dstLatitude DOUBLE, dstLongitude DOUBLE)
  WITH (kafka_topic='geoEvents', value_format='json', partitions=1);

CREATE STREAM locations AS
  SELECT rideId, latitude, longitude,
         GEO_DISTANCE(latitude, longitude, dstLatitude, dstLongitude) AS kmToDst
  FROM geoEvents
  EMIT CHANGES;

CREATE TABLE activePromotions AS
  SELECT rideId,
         qualifyPromotion(kmToDst) AS promotion
  FROM locations
  GROUP BY rideId
  EMIT CHANGES;

SELECT rideId, promotion FROM activePromotions WHERE ROWKEY = '6fd0fcdb';

CREATE STREAM routeWaypoints (vehicleId VARCHAR, latitude DOUBLE(10, 2), longitude DOUBLE(10, 2))
  WITH (kafka_topic='waypoints', partitions=3, key='vehicleId', value_format='json');

CREATE TABLE currentCarLocations AS
  SELECT vehicleId,
         LATEST_BY_OFFSET(latitude) AS latitude,
         LATEST_BY_OFFSET(longitude) AS longitude
  FROM routeWaypoints
  GROUP BY vehicleId
  EMIT CHANGES;

SELECT * FROM currentCarLocations EMIT CHANGES;
