-- The course's rideshare example (ksqlDB), as printed, run by eddy's SQL layer.
-- Tests: sql/tests/sql_rideshare.rs (embedded), tests/tests/sql_server.rs (`eddy sql -f`).
-- geoEvents is declared here: the course fills it with a source connector (its section
-- 7.3.2.1), so its columns are those the statements read.
-- qualifyPromotion is a user-defined function registered from Rust: TRUE when the ride is
-- within 5 km of its destination (the course leaves the threshold to the UDF).

CREATE STREAM geoEvents (rideId VARCHAR KEY, latitude DOUBLE, longitude DOUBLE,
                         dstLatitude DOUBLE, dstLongitude DOUBLE)
  WITH (kafka_topic='geoEvents', value_format='json', partitions=1);

CREATE STREAM locations AS
  SELECT rideId,
         latitude,
         longitude,
         GEO_DISTANCE(latitude,
                       longitude,
                       dstLatitude,
                       dstLongitude
                     ) AS kmToDst

  FROM geoEvents
  EMIT CHANGES;

CREATE TABLE activePromotions AS
  SELECT rideId,
         qualifyPromotion(kmToDst) AS promotion
  FROM locations
  GROUP BY rideId
  EMIT CHANGES;

SELECT rideId, promotion  
FROM activePromotions  
WHERE ROWKEY = '6fd0fcdb';

CREATE STREAM routeWaypoints (  
    vehicleId VARCHAR,  
    latitude DOUBLE(10, 2),  
    longitude DOUBLE(10, 2)  
) WITH (  
    kafka_topic = 'locations',  
    partitions = 3,  
    key = 'vehicleId',  
    value_format = 'json'  
);

CREATE TABLE currentCarLocations (  
  vehicleId VARCHAR,  
  latitude DOUBLE(10, 2),  
  longitude DOUBLE(10, 2)  
) WITH (  
  kafka_topic = 'locations',  
  partitions = 3,  
  key = 'vehicleId',  
  value_format = 'json'  
);

-- The pull query (the course's last slide) before the push query, which runs until stopped.
SELECT vehicleId,  
        latitude,  
        longitude  
FROM currentCarLocations  
WHERE ROWKEY = '6fd0fcdb';

SELECT vehicleId,  
        latitude,  
        longitude  
FROM currentCarLocations  
WHERE ROWKEY = '6fd0fcdb'  
EMIT CHANGES;
